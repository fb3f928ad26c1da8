using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>Writes <see cref="SessionActivity"/> to <c>sessions.last_activity_at</c> every <see cref="StreamingOptions.ActivityFlushInterval"/>.</summary>
internal sealed class SessionActivityFlusher(
    SessionActivity activity, Db db, TimeProvider time, IOptions<StreamingOptions> options, ILogger<SessionActivityFlusher> logger) : BackgroundService
{
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
        try
        {
            await using var conn = await db.OpenAsync(ct);
            await using var tx = await conn.BeginTransactionAsync(ct);
            // Never move the time backwards (another replica may have written a later one).
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE sessions SET last_activity_at = @At WHERE id = @SessionId AND (last_activity_at IS NULL OR last_activity_at < @At)",
                dirty.Select(d => new { d.SessionId, d.At }), tx, cancellationToken: ct));
            await tx.CommitAsync(ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Activity is advisory (idle detection); losing one batch is better than stopping the flusher.
            logger.LogWarning(ex, "Could not record viewer activity for {Count} sessions", dirty.Count);
        }
    }
}
