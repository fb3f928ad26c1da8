using Dapper;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Reads single rows by key on every call (never cached: a change in the database counts at once), with the
/// lookups of concurrent callers group-committed (<see cref="GroupCommitQueue{TItem, TResult}"/>) into one
/// <c>WHERE key IN (...)</c> query. Each caller sees the row as it is after its call arrived; a lone call costs
/// one query.
/// </summary>
public sealed class KeyedLookup<TRow> : IAsyncDisposable where TRow : class
{
    private readonly Db _db;
    private readonly string _sql;
    private readonly Func<TRow, string> _keyOf;
    private readonly GroupCommitQueue<string, TRow?> _queue;

    /// <param name="columns">The SELECT list, mapped onto <typeparamref name="TRow"/>.</param>
    public KeyedLookup(Db db, string table, string keyColumn, string columns, Func<TRow, string> keyOf, int maxBatch)
    {
        _db = db;
        _sql = $"SELECT {columns} FROM {table} WHERE {db.InList(keyColumn, "keys")}";
        _keyOf = keyOf;
        _queue = new GroupCommitQueue<string, TRow?>(QueryAsync, maxBatch);
    }

    /// <summary>The row with this key, or null when there is none.</summary>
    public Task<TRow?> FindAsync(string key, CancellationToken ct) => _queue.EnqueueAsync(key, ct).WaitAsync(ct);

    private async Task<IReadOnlyList<TRow?>> QueryAsync(IReadOnlyList<string> keys, CancellationToken ct)
    {
        await using var conn = await _db.OpenAsync(ct);
        var rows = (await conn.QueryAsync<TRow>(new CommandDefinition(_sql, new { keys = keys.Distinct(StringComparer.Ordinal).ToArray() }, cancellationToken: ct)))
            .ToDictionary(_keyOf, StringComparer.Ordinal);
        return keys.Select(k => rows.GetValueOrDefault(k)).ToList();
    }

    public ValueTask DisposeAsync() => _queue.DisposeAsync();
}
