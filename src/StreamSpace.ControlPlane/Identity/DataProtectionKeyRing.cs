using Dapper;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// Makes sure, at start-up, that the Data Protection key ring (<see cref="DataProtectionKeyStore"/>) has a key this replica
/// can use, made by one replica at a time. Replicas that started together on a key ring without one each made a key: the
/// one that stored last used its own (activated later), which the other had not read, and the other replica refused its
/// cookies and antiforgery tokens until its key ring refresh, about a day later (ASP.NET Core reads the ring again for an
/// unknown key only in the first minutes after start).
/// </summary>
public sealed class DataProtectionKeyRing(Db db, IKeyManager keys, IDataProtectionProvider protection, TimeProvider time)
{
    /// <summary>PostgreSQL advisory lock held while a replica looks for, and if need be makes, the first key.</summary>
    internal const long FirstKeyLockKey = 0x5353_4450_4B45_5931; // "SSDPKEY1"

    /// <summary>
    /// On PostgreSQL, when no key is usable now (a fresh database, or every key expired or revoked), loads the key ring,
    /// making a key if there still is none, while holding an advisory lock on a connection of its own: a replica that waited
    /// for it finds that key. With a usable key (every start but the first) it costs one read and takes no lock. SQLite
    /// serves one replica.
    /// </summary>
    public async Task LoadAsync(CancellationToken ct)
    {
        if (!db.IsPostgres || HasUsableKey()) return;
        // Unpooled: a session-level lock ends with its session, whatever happens to this code.
        await using var holder = await db.OpenUnpooledAsync(ct);
        await holder.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_lock(@key)", new { key = FirstKeyLockKey }, cancellationToken: ct));
        try
        {
            // The first use reads the ring from the database and makes a key only if it holds none this replica can use; the
            // ring is then kept in memory (it is not read again for the hosted service's own load after this start-up step).
            protection.CreateProtector(nameof(DataProtectionKeyRing)).Protect([0]);
        }
        finally
        {
            // Not cancellable, so the next replica need not wait for this connection's close (which releases it anyway).
            await holder.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_unlock(@key)", new { key = FirstKeyLockKey },
                cancellationToken: CancellationToken.None));
        }
    }

    /// <summary>Reads the stored keys without loading (or making) a key ring: is one of them active now?</summary>
    private bool HasUsableKey()
    {
        var now = time.GetUtcNow();
        return keys.GetAllKeys().Any(k => !k.IsRevoked && k.ActivationDate <= now && now < k.ExpirationDate);
    }
}
