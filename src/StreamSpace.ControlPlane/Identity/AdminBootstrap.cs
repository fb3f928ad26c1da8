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
        var file = Path.Combine(options.Value.DataFolder, PasswordFileName);
        // A generated password is saved before the account exists: an account whose password could not then be saved (a
        // data folder that cannot be written, a full disk) would be an admin nobody can sign in as, and the marker would
        // stop every later start from making another.
        var pending = generated ? await SavePendingAsync(file, password, ct) : null;
        bool created;
        try
        {
            created = await db.InTransactionAsync(async (conn, tx) =>
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
        }
        catch
        {
            if (pending is not null) File.Delete(pending);
            throw;
        }
        if (!created)
        {
            if (pending is not null) File.Delete(pending);
            return;
        }

        if (pending is not null)
        {
            // A rename within the folder: the file appears whole, with the mode it was made with.
            File.Move(pending, file, overwrite: true);
            // Printed once on the console on purpose: this is the only way the operator learns it.
            Console.Out.WriteLine($"StreamSpace admin account created: username 'admin', password '{password}' (saved to {file})");
            logger.LogInformation("Created the admin account with a generated password saved to {File}", file);
        }
        else
        {
            logger.LogInformation("Created the admin account with the password from STREAMSPACE_ADMIN_PASSWORD");
        }
    }

    /// <summary>
    /// Writes <paramref name="password"/> to a new file beside <paramref name="file"/>, readable by this account only from
    /// the moment it exists (not written first and narrowed after), and answers its path.
    /// </summary>
    private static async Task<string> SavePendingAsync(string file, string password, CancellationToken ct)
    {
        var folder = Path.GetDirectoryName(file)!;
        var pending = Path.Combine(folder, $".{PasswordFileName}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(folder);
            var create = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            await using var stream = new FileStream(pending, create);
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(password + "\n"), ct);
            stream.Flush(flushToDisk: true);
            return pending;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(pending); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            throw new StreamSpaceConfigurationException(
                $"cannot save the generated admin password in {folder} ({ex.Message}): make STREAMSPACE_DATA a folder this account can write, " +
                "or set STREAMSPACE_ADMIN_PASSWORD", ex);
        }
    }

    private static string GeneratePassword()
    {
        const string alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        return RandomNumberGenerator.GetString(alphabet, 20);
    }
}
