using System.Threading.Channels;
using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// Reads the user row behind each API token on every request (so a disabled user, a bumped token version or a
/// deleted user ends the token at once), coalescing the lookups of concurrent requests into one query: every
/// lookup queued while the previous query ran is answered by the next one. Each request still sees the row as it is
/// after the request arrived; a lone request costs one query, as before.
/// </summary>
public sealed class TokenUserLookup(Db db, ILogger<TokenUserLookup> logger) : BackgroundService
{
    private const int MaxBatch = 500;

    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });

    public async Task<UserRecord?> FindAsync(string userId, CancellationToken ct)
    {
        var pending = new Pending(userId, new TaskCompletionSource<UserRecord?>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_queue.Writer.TryWrite(pending))
            return await QueryAsync([userId], ct) is var one && one.TryGetValue(userId, out var u) ? u : null; // shutting down
        return await pending.Completion.Task.WaitAsync(ct);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<Pending>(MaxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                batch.Clear();
                while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var p)) batch.Add(p);
                try
                {
                    var users = await QueryAsync(batch.Select(p => p.UserId).Distinct(StringComparer.Ordinal).ToArray(), stoppingToken);
                    foreach (var p in batch) p.Completion.TrySetResult(users.GetValueOrDefault(p.UserId));
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    // Each request fails as its own lookup would have (a database outage becomes 503).
                    if (!Hosting.ErrorHandling.IsDatabaseOutage(ex)) logger.LogError(ex, "Looking up {Count} token user(s) failed", batch.Count);
                    foreach (var p in batch) p.Completion.TrySetException(ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        _queue.Writer.TryComplete();
        while (_queue.Reader.TryRead(out var p)) p.Completion.TrySetCanceled(stoppingToken);
    }

    private async Task<Dictionary<string, UserRecord>> QueryAsync(string[] ids, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        // Npgsql takes the array as one parameter; Dapper expands the list for SQLite.
        var rows = await conn.QueryAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users WHERE {(db.IsPostgres ? "id = ANY(@ids)" : "id IN @ids")}", new { ids }, cancellationToken: ct));
        return rows.ToDictionary(u => u.Id, StringComparer.Ordinal);
    }

    private sealed record Pending(string UserId, TaskCompletionSource<UserRecord?> Completion);
}
