using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// Reads the user row behind each API token on every request, so a disabled user, a bumped token version or a
/// deleted user ends the token at once; lookups of concurrent requests share one query (<see cref="KeyedLookup{TRow}"/>).
/// </summary>
public sealed class TokenUserLookup(Db db) : IAsyncDisposable
{
    private readonly KeyedLookup<UserRecord> _users = new(db, "users", "id", UserRecord.Columns, u => u.Id, maxBatch: 500);

    public Task<UserRecord?> FindAsync(string userId, CancellationToken ct) => _users.FindAsync(userId, ct);

    public ValueTask DisposeAsync() => _users.DisposeAsync();
}
