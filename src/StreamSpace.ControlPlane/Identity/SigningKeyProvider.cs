using System.Security.Cryptography;
using Dapper;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// The JWT signing key: from configuration when given, otherwise generated once and stored in the
/// <c>settings</c> table so every replica signs and validates with the same key.
/// </summary>
public sealed class SigningKeyProvider(Db db, IOptions<StreamSpaceOptions> options, TimeProvider time)
{
    private const string SettingKey = "jwt_signing_key";
    private SymmetricSecurityKey? _key;

    public SymmetricSecurityKey Key => _key ?? throw new InvalidOperationException("Signing key not loaded yet");

    public async Task LoadAsync(CancellationToken ct)
    {
        if (options.Value.JwtSigningKey is { Length: > 0 } configured)
        {
            // Checked when the options were read (StreamSpaceOptions.Validate), before anything started.
            _key = new SymmetricSecurityKey(Convert.FromBase64String(configured.Trim()));
            return;
        }
        await using var conn = await db.OpenAsync(ct);
        var generated = Convert.ToBase64String(RandomNumberGenerator.GetBytes(64));
        await conn.ExecuteAsync(new CommandDefinition(
            "INSERT INTO settings (key, value, updated_at) VALUES (@SettingKey, @generated, @now) ON CONFLICT (key) DO NOTHING",
            new { SettingKey, generated, now = time.GetUtcNow() }, cancellationToken: ct));
        var stored = await conn.QuerySingleAsync<string>(new CommandDefinition(
            "SELECT value FROM settings WHERE key = @SettingKey", new { SettingKey }, cancellationToken: ct));
        _key = new SymmetricSecurityKey(Convert.FromBase64String(stored));
    }
}
