using System.Net.WebSockets;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Keeps <c>agents.status</c> true over time: flushes buffered heartbeats, closes connections silent
/// for longer than the timeout (and marks them offline), sweeps rows of agents whose replica died, and
/// closes sockets of agents whose row was deleted or taken over by another replica. After a database outage the sweep
/// waits until the database has answered for 2 × <see cref="StreamSpaceOptions.HeartbeatFlushInterval"/> +
/// <see cref="StreamSpaceOptions.OfflineSweepGrace"/>: every replica's rows are as old as the outage then, and another
/// replica's agents kept heartbeating through it too; swept before that replica wrote its buffered heartbeats, their rows
/// lost their connection id, and its flush found them disowned and closed every one of their sockets.
/// </summary>
public sealed class AgentLivenessMonitor(
    AgentConnectionRegistry registry, AgentStatusWriter writer, TimeProvider time,
    IOptions<StreamSpaceOptions> options, ILogger<AgentLivenessMonitor> logger) : BackgroundService
{
    private readonly Lock _outageLock = new();
    // Set by a database call of this monitor that failed as an outage; cleared once the sweep waited long enough after it.
    private bool _afterOutage;
    // When the database first answered again after the latest failure (null: not yet).
    private DateTimeOffset? _reachableSince;
    private int _outages;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.WhenAll(
        RunEveryAsync(options.Value.HeartbeatFlushInterval, "Heartbeat flush", FlushAsync, stoppingToken),
        RunEveryAsync(options.Value.LivenessCheckInterval, "Closing silent agents", CloseSilentAsync, stoppingToken),
        RunEveryAsync(options.Value.OfflineSweepInterval, "Sweep of silent agents", SweepAsync, stoppingToken));

    /// <param name="work">One pass; returns whether it reached the database (a pass with nothing to write may not).</param>
    private async Task RunEveryAsync(TimeSpan interval, string name, Func<CancellationToken, Task<bool>> work, CancellationToken ct)
    {
        var outage = new DatabaseOutageLog(logger, time, name, interval);
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try
                {
                    if (await work(ct)) outage.Succeeded();
                }
                catch (Exception ex) when (!ct.IsCancellationRequested)
                {
                    // A database hiccup must not stop liveness tracking; the next tick tries again.
                    if (outage.Failed(ex)) NoteOutage();
                    else logger.LogError(HubEvents.HubLoopFailed, ex, "Agent liveness work {Work} failed", name);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    // A failed flush keeps its heartbeats for the next one, so the pass after a failure writes (reaches the database).
    private async Task<bool> FlushAsync(CancellationToken ct)
    {
        foreach (var c in await writer.FlushAsync(ct))
        {
            logger.LogWarning(HubEvents.AgentRowGone, "Agent {AgentId} connection {ConnectionId} no longer owns its row; closing it", c.AgentId, c.ConnectionId);
            await c.CloseAsync(WebSocketCloseStatus.PolicyViolation, "agent removed or connected elsewhere");
        }
        return true;
    }

    private async Task<bool> CloseSilentAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var wrote = false;
        foreach (var c in registry.TakeTimedOut(now))
        {
            logger.LogWarning(HubEvents.AgentTimedOut, "Agent {AgentId} connection {ConnectionId} silent for more than {Timeout}; closing it and marking it offline",
                c.AgentId, c.ConnectionId, options.Value.AgentOfflineAfter);
            c.Abort();
            await writer.MarkOfflineAsync(c.AgentId, c.ConnectionId, now, ct);
            wrote = true;
        }
        return wrote;
    }

    // After an outage each pass probes the database until it answers; otherwise the stale sweep queries it.
    private async Task<bool> SweepAsync(CancellationToken ct)
    {
        // The heartbeats buffered here first: after a database outage they are the only record that this replica's agents
        // kept talking, and the sweep would otherwise mark them offline and the check below close their sockets.
        await FlushAsync(ct);
        if (!await SweepMustWaitAsync(ct)) await writer.SweepStaleAsync(time.GetUtcNow(), ct);
        foreach (var c in await writer.FindDisownedAsync(registry.Snapshot(), ct))
        {
            // Only act if it is still current: one replaced or timed out meanwhile is already being closed.
            if (!registry.IsCurrent(c.AgentId, c.ConnectionId)) continue;
            logger.LogWarning(HubEvents.AgentRowGone, "Agent {AgentId} row was deleted or is owned by another connection; closing {ConnectionId}", c.AgentId, c.ConnectionId);
            await c.CloseAsync(WebSocketCloseStatus.PolicyViolation, "agent removed or connected elsewhere");
        }
        return true;
    }

    private void NoteOutage()
    {
        lock (_outageLock)
        {
            _afterOutage = true;
            _reachableSince = null;
            _outages++;
        }
    }

    /// <summary>
    /// True while the stale sweep must wait after an outage. Until the database answers again, a probe at each sweep tick
    /// finds out when it does (the sweep itself is not run, and the probe's failure keeps the outage noted).
    /// </summary>
    private async Task<bool> SweepMustWaitAsync(CancellationToken ct)
    {
        DateTimeOffset? since;
        int outages;
        lock (_outageLock)
        {
            if (!_afterOutage) return false;
            since = _reachableSince;
            outages = _outages;
        }
        var wait = 2 * options.Value.HeartbeatFlushInterval + options.Value.OfflineSweepGrace;
        if (since is null)
        {
            await writer.ProbeAsync(ct);
            var now = time.GetUtcNow();
            lock (_outageLock)
            {
                // Another database call failed while the probe ran: the database is not back for sure yet.
                if (_outages != outages) return true;
                _reachableSince = since = now;
            }
            logger.LogWarning(HubEvents.StaleSweepWaits,
                "The database answers again after an outage; the sweep of silent agents waits until {Until}, so that every replica first writes the heartbeats it could not write meanwhile",
                now + wait);
        }
        if (time.GetUtcNow() - since.Value < wait) return true;
        lock (_outageLock)
        {
            if (_outages != outages) return true;
            _afterOutage = false;
            _reachableSince = null;
        }
        return false;
    }
}
