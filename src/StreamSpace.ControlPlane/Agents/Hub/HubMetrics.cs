using System.Diagnostics.Metrics;
using StreamSpace.ControlPlane.Ops;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Agent hub instruments on the <c>StreamSpace.ControlPlane</c> meter (exported on /metrics). The running
/// totals are also kept as plain fields so tests and diagnostics can read them without a listener.
/// </summary>
public sealed class HubMetrics
{
    private readonly Counter<long> _heartbeats;
    private readonly Counter<long> _heartbeatBatches;
    private readonly Counter<long> _commandsSent;
    private readonly Counter<long> _commandsRedelivered;
    private readonly Counter<long> _commandsExpired;
    private readonly Counter<long> _commandWakeUps;
    private long _heartbeatBatchCount;
    private long _heartbeatRowsWritten;
    private long _commandsSentCount;
    private long _commandsRedeliveredCount;
    private long _commandsExpiredCount;
    private long _commandWakeUpsCount;

    public HubMetrics(IMeterFactory meters, AgentConnectionRegistry registry)
    {
        var meter = meters.Create(OpsEndpoints.MeterName);
        meter.CreateObservableGauge("streamspace.agents.connected", () => registry.Count, "{agent}", "Agents connected to this replica");
        _heartbeats = meter.CreateCounter<long>("streamspace.agent.heartbeats", "{heartbeat}", "Heartbeats received from agents");
        _heartbeatBatches = meter.CreateCounter<long>("streamspace.agent.heartbeat_batches", "{batch}", "Batched heartbeat writes to the agents table");
        _commandsSent = meter.CreateCounter<long>("streamspace.commands.sent", "{command}", "Commands sent to agents for the first time");
        _commandsRedelivered = meter.CreateCounter<long>("streamspace.commands.redelivered", "{command}", "Commands sent again after a reconnect or a timeout");
        _commandsExpired = meter.CreateCounter<long>("streamspace.commands.expired", "{command}", "Commands that reached their TTL before finishing");
        _commandWakeUps = meter.CreateCounter<long>("streamspace.commands.wakeups", "{notification}",
            "Notifications that another replica wrote commands for an agent connected here (PostgreSQL LISTEN/NOTIFY)");
    }

    public long HeartbeatBatches => Interlocked.Read(ref _heartbeatBatchCount);
    public long HeartbeatRowsWritten => Interlocked.Read(ref _heartbeatRowsWritten);
    public long CommandsSent => Interlocked.Read(ref _commandsSentCount);
    public long CommandsRedelivered => Interlocked.Read(ref _commandsRedeliveredCount);
    public long CommandsExpired => Interlocked.Read(ref _commandsExpiredCount);
    public long CommandWakeUps => Interlocked.Read(ref _commandWakeUpsCount);

    public void HeartbeatReceived() => _heartbeats.Add(1);

    public void HeartbeatBatchWritten(int rows)
    {
        Interlocked.Increment(ref _heartbeatBatchCount);
        Interlocked.Add(ref _heartbeatRowsWritten, rows);
        _heartbeatBatches.Add(1);
    }

    public void CommandSent(bool redelivery)
    {
        if (redelivery)
        {
            Interlocked.Increment(ref _commandsRedeliveredCount);
            _commandsRedelivered.Add(1);
        }
        else
        {
            Interlocked.Increment(ref _commandsSentCount);
            _commandsSent.Add(1);
        }
    }

    public void CommandExpired()
    {
        Interlocked.Increment(ref _commandsExpiredCount);
        _commandsExpired.Add(1);
    }

    public void CommandWakeUpReceived()
    {
        Interlocked.Increment(ref _commandWakeUpsCount);
        _commandWakeUps.Add(1);
    }
}
