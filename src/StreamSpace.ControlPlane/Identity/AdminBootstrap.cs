using System.Security.Cryptography;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// First start: creates <c>admin</c> with the password from <c>STREAMSPACE_ADMIN_PASSWORD</c>, or a
/// generated one that is printed once and saved (0600) to <c>admin-password.txt</c> in the data folder.
/// There is no default password.
/// </summary>
public sealed class AdminBootstrap(Db db, IOptions<StreamSpaceOptions> options, TimeProvider time, ILogger<AdminBootstrap> logger)
{
    public const string AdminUsername = "admin";
    public const string PasswordFileName = "admin-password.txt";

    public async Task EnsureAdminAsync(CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var exists = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT COUNT(*) FROM users WHERE username = @AdminUsername", new { AdminUsername }, cancellationToken: ct));
        if (exists > 0) return;

        var generated = options.Value.AdminPassword is null;
        var password = options.Value.AdminPassword ?? GeneratePassword();
        var now = time.GetUtcNow();
        var inserted = await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
            VALUES (@id, @AdminUsername, @hash, @role, @disabled, @max, 1, @now, @now)
            ON CONFLICT (username) DO NOTHING
            """,
            new { id = Guid.NewGuid().ToString("N"), AdminUsername, hash = PasswordHasher.Hash(password), role = Roles.Admin, disabled = false, max = options.Value.DefaultMaxSessions, now },
            cancellationToken: ct));
        if (inserted == 0) return; // another replica created it first

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
