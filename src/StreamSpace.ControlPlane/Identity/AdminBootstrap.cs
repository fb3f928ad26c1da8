using System.Security.Cryptography;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// First start: creates <c>admin</c> with the password from <c>STREAMSPACE_ADMIN_PASSWORD</c>, or a
/// generated one that is printed once and saved (0600) to <c>admin-password.txt</c> in the data folder.
/// There is no default password. Only once per database: a marker in <c>settings</c>, written in the same
/// transaction, says it happened, so an <c>admin</c> an operator deleted stays deleted across restarts.
/// </summary>
public sealed class AdminBootstrap(Db db, IOptions<StreamSpaceOptions> options, AuditLog audit, TimeProvider time, ILogger<AdminBootstrap> logger)
{
    public const string AdminUsername = "admin";
    public const string PasswordFileName = "admin-password.txt";
    /// <summary>The <c>settings</c> key whose presence means the first admin was made (or was not needed).</summary>
    public const string MarkerKey = "admin_bootstrapped";
    /// <summary>Who the audit log names for the creation: nobody signed in.</summary>
    public const string SystemActor = "system";

    public async Task EnsureAdminAsync(CancellationToken ct)
    {
        await using (var conn = await db.OpenAsync(ct))
        {
            var marked = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
                "SELECT COUNT(*) FROM settings WHERE key = @MarkerKey", new { MarkerKey }, cancellationToken: ct));
            if (marked > 0) return; // every start but the first: no slow hash
        }

        var generated = options.Value.AdminPassword is null;
        var password = options.Value.AdminPassword ?? GeneratePassword();
        var hash = PasswordHasher.Hash(password);
        var created = await db.InTransactionAsync(async (conn, tx) =>
        {
            var now = time.GetUtcNow();
            // The marker row is also the lock: a replica starting at the same moment waits here, then finds it and stops.
            var claimed = await conn.ExecuteAsync(new CommandDefinition(
                "INSERT INTO settings (key, value, updated_at) VALUES (@MarkerKey, @value, @now) ON CONFLICT (key) DO NOTHING",
                new { MarkerKey, value = now.ToString("O", System.Globalization.CultureInfo.InvariantCulture), now }, tx, cancellationToken: ct));
            if (claimed == 0) return false;
            // A database from before the marker that has users was bootstrapped then (admin deleted or not).
            var users = await conn.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM users", transaction: tx, cancellationToken: ct));
            if (users > 0) return false;
            await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES (@id, @AdminUsername, @hash, @role, @disabled, @max, 1, @now, @now)
                """,
                new { id = Guid.NewGuid().ToString("N"), AdminUsername, hash, role = Roles.Admin, disabled = false, max = options.Value.DefaultMaxSessions, now },
                tx, cancellationToken: ct));
            await audit.WriteAsync(conn, tx, SystemActor, AuditActions.UserCreated, AdminUsername,
                $"role={Roles.Admin} first start, password {(generated ? "generated" : "from STREAMSPACE_ADMIN_PASSWORD")}", null, ct);
            return true;
        }, ct);
        if (!created) return;

        if (generated)
        {
            var file = Path.Combine(options.Value.DataFolder, PasswordFileName);
            Directory.CreateDirectory(options.Value.DataFolder);
            await File.WriteAllTextAsync(file, password + "\n", ct);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            // Printed once on the console on purpose: this is the only way the operator learns it.
            Console.Out.WriteLine($"StreamSpace admin account created: username 'admin', password '{password}' (saved to {file})");
            logger.LogInformation("Created the admin account with a generated password saved to {File}", file);
        }
        else
        {
            logger.LogInformation("Created the admin account with the password from STREAMSPACE_ADMIN_PASSWORD");
        }
    }

    private static string GeneratePassword()
    {
        const string alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        return RandomNumberGenerator.GetString(alphabet, 20);
    }
}
