using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>Writes <see cref="SessionActivity"/> to <c>sessions.last_activity_at</c> every <see cref="StreamingOptions.ActivityFlushInterval"/>.</summary>
internal sealed class SessionActivityFlusher(
    SessionActivity activity, Db db, TimeProvider time, IOptions<StreamingOptions> options, ILogger<SessionActivityFlusher> logger) : BackgroundService
{
    // Used by the flush loop and, after it ended, by the final flush: never two at a time.
    private readonly DatabaseOutageLog _outage = new(logger, time, "Viewer activity flush", options.Value.ActivityFlushInterval);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.ActivityFlushInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await FlushAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        // Last input of the final seconds before shutdown.
        await FlushAsync(CancellationToken.None);
    }

    internal async Task FlushAsync(CancellationToken ct)
    {
        var dirty = activity.TakeDirty();
        activity.ForgetIdle();
        if (dirty.Count == 0) return;
        // One order for every writer of these rows (reconciliation locks sessions too), so two never deadlock here.
        var rows = dirty.OrderBy(d => d.SessionId, StringComparer.Ordinal).Select(d => new { d.SessionId, d.At }).ToList();
        try
        {
            // Never move the time backwards (another replica may have written a later one).
            await db.InTransactionAsync((conn, tx) => conn.ExecuteAsync(new CommandDefinition(
                "UPDATE sessions SET last_activity_at = @At WHERE id = @SessionId AND (last_activity_at IS NULL OR last_activity_at < @At)",
                rows, tx, cancellationToken: ct)), ct);
            _outage.Succeeded();
        }
        catch (Exception ex)
        {
            // Idle handling reads this: the input is written by the next flush (the final one at shutdown included), never dropped.
            activity.Restore(dirty);
            if (ex is OperationCanceledException) throw;
            if (!_outage.Failed(ex))
                logger.LogWarning(ex, "Could not record viewer activity for {Count} sessions, trying again in {Interval}", dirty.Count,
                    options.Value.ActivityFlushInterval);
        }
    }
}
