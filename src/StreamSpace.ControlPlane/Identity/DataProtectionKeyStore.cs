using System.Xml.Linq;
using Dapper;
using Microsoft.AspNetCore.DataProtection.Repositories;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// The Data Protection key ring (the keys that encrypt the web UI's sign-in cookie and its forms' antiforgery tokens),
/// kept in the <c>settings</c> table, one row per key or revocation, as the JWT signing key is
/// (<see cref="SigningKeyProvider"/>). ASP.NET Core's default, a folder under $HOME, is one key ring per host: a cookie
/// issued by one replica was refused by another (design §9: no sticky sessions), and a container without a persistent
/// HOME signed everyone out at every restart.
/// </summary>
/// <remarks>
/// The keys are stored as they come, not encrypted: they sit next to the JWT signing key and the password hashes, which
/// anyone who can read the database already holds, and whoever holds the JWT signing key can mint any user's API token
/// (what the cookie carries) anyway. <see cref="IXmlRepository"/> is synchronous (called at start-up, at a key-ring
/// refresh, about daily, and when a key is made, every 90 days), so it uses <see cref="Db.Open"/> and Dapper's
/// synchronous calls rather than blocking on asynchronous ones; the interface takes no cancellation token, so the
/// connection's command timeout bounds each call.
/// </remarks>
public sealed class DataProtectionKeyStore(Db db, TimeProvider time) : IXmlRepository
{
    /// <summary>
    /// The key ring's application name, the same on every replica: by default it is the content root, so replicas installed
    /// in different folders could not read each other's cookies even with one key ring.
    /// </summary>
    public const string ApplicationName = "StreamSpace";
    /// <summary>Prefix of this store's rows in <c>settings</c>.</summary>
    public const string KeyPrefix = "dataprotection:";
    /// <summary>The length of <c>settings.key</c>.</summary>
    private const int MaxKeyLength = 100;

    public IReadOnlyCollection<XElement> GetAllElements()
    {
        using var conn = db.Open();
        // Every row: two replicas that started on an empty key ring at once each made a key, and both are kept.
        return conn.Query<string>("SELECT value FROM settings WHERE key LIKE @pattern ORDER BY key", new { pattern = KeyPrefix + "%" })
            .Select(XElement.Parse)
            .ToList();
    }

    public void StoreElement(XElement element, string friendlyName)
    {
        var value = element.ToString(SaveOptions.DisableFormatting);
        var now = time.GetUtcNow();
        using var conn = db.Open();
        // Friendly names are "key-<id>" and "revocation-…", unique in practice; a name already taken (or too long for the
        // column) is stored under a fresh one instead, so no element is lost and storing never fails on a conflict.
        var name = KeyPrefix.Length + friendlyName.Length <= MaxKeyLength ? friendlyName : Guid.NewGuid().ToString("N");
        const string Insert = "INSERT INTO settings (key, value, updated_at) VALUES (@key, @value, @now) ON CONFLICT (key) DO NOTHING";
        if (conn.Execute(Insert, new { key = KeyPrefix + name, value, now }) == 0)
            conn.Execute(Insert, new { key = KeyPrefix + Guid.NewGuid().ToString("N"), value, now });
    }
}
