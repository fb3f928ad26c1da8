using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// Reads the user row behind each API token on every request (so a disabled user, a bumped token version or a
/// deleted user ends the token at once), group-committing the lookups of concurrent requests into one query. Each
/// request still sees the row as it is after the request arrived; a lone request costs one query, as before.
/// </summary>
public sealed class TokenUserLookup : IAsyncDisposable
{
    private readonly Db _db;
    private readonly GroupCommitQueue<string, UserRecord?> _queue;

    public TokenUserLookup(Db db)
    {
        _db = db;
        _queue = new GroupCommitQueue<string, UserRecord?>(QueryAsync, maxBatch: 500);
    }

    public Task<UserRecord?> FindAsync(string userId, CancellationToken ct) => _queue.EnqueueAsync(userId, ct).WaitAsync(ct);

    private async Task<IReadOnlyList<UserRecord?>> QueryAsync(IReadOnlyList<string> userIds, CancellationToken ct)
    {
        var ids = userIds.Distinct(StringComparer.Ordinal).ToArray();
        await using var conn = await _db.OpenAsync(ct);
        // Npgsql takes the array as one parameter; Dapper expands the list for SQLite.
        var rows = (await conn.QueryAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users WHERE {(_db.IsPostgres ? "id = ANY(@ids)" : "id IN @ids")}", new { ids }, cancellationToken: ct)))
            .ToDictionary(u => u.Id, StringComparer.Ordinal);
        return userIds.Select(id => rows.GetValueOrDefault(id)).ToList();
    }

    public ValueTask DisposeAsync() => _queue.DisposeAsync();
}
