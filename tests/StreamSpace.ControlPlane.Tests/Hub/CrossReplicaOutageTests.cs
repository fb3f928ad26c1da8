using System.Diagnostics;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Two replicas on one PostgreSQL database, each behind a <see cref="TcpProxy"/> of its own, so a test can give the
/// database back to replica A before replica B (as it happens when A's sweep tick comes before B's first flush). The
/// hub timings (1 s heartbeats, offline after 3 s, sweep grace 1 s, heartbeat flush every 1 s) with the database sweep
/// every 200 ms: right after the database is back, A's sweep is the first to reach it.
/// </summary>
public sealed class TwoProxiedReplicasControlPlane() : HubControlPlane(DatabaseKind.Postgres)
{
    private const string FastSweep = "--StreamSpace:OfflineSweepInterval=00:00:00.200";
    private TcpProxy? _proxyA;
    private TcpProxy? _proxyB;

    public TcpProxy ProxyA => _proxyA ?? throw new InvalidOperationException("Not initialized");
    public TcpProxy ProxyB => _proxyB ?? throw new InvalidOperationException("Not initialized");
    public Uri ReplicaBAddress { get; private set; } = null!;

    protected override IEnumerable<string> ExtraArgs
    {
        get
        {
            _proxyA ??= NewProxy();
            return [.. base.ExtraArgs, FastSweep, DatabaseThrough(_proxyA)];
        }
    }

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        _proxyB = NewProxy();
        (_, ReplicaBAddress) = await StartReplicaAsync(DatabaseThrough(_proxyB));
    }

    private TcpProxy NewProxy()
    {
        var direct = new Uri(Database.Setting);
        return new TcpProxy(direct.Host, direct.Port);
    }

    private string DatabaseThrough(TcpProxy proxy)
    {
        var direct = new Uri(Database.Setting);
        return $"--StreamSpace:Database={direct.Scheme}://{direct.UserInfo}@127.0.0.1:{proxy.Port}{direct.AbsolutePath}";
    }

    public override async ValueTask DisposeAsync()
    {
        _proxyA?.Restore();
        _proxyB?.Restore();
        await base.DisposeAsync();
        if (_proxyA is not null) await _proxyA.DisposeAsync();
        if (_proxyB is not null) await _proxyB.DisposeAsync();
    }
}

/// <summary>
/// Invariant 1 across replicas through a database outage: the sweep of one replica, meant for agents of a replica that
/// died, waits after the outage until every replica had time to write the heartbeats it buffered meanwhile, so it never
/// takes another replica's heartbeating agent for silent (and that replica's flush never closes its socket).
/// </summary>
[Trait("Category", "Timing")]
public sealed class CrossReplicaOutageTests_Postgres(TwoProxiedReplicasControlPlane cp) : IClassFixture<TwoProxiedReplicasControlPlane>
{
    [Fact]
    public async Task After_an_outage_one_replicas_sweep_leaves_the_heartbeating_agent_of_another_replica_online_and_connected()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("xoutage");
        // On replica B, heartbeats by hand, so the test knows which ones fell into the outage.
        await using var agent = await ScriptedAgent.OnlineAsync(cp.ReplicaBAddress, agentId, token, heartbeat: false);
        var connectionId = agent.Welcome!.ConnectionId;

        cp.ProxyA.Cut();
        cp.ProxyB.Cut();
        try
        {
            // Longer than the offline timeout plus the sweep's grace (3 s + 1 s): the row's last heartbeat is that old
            // when the database comes back, though the agent never went quiet.
            await HeartbeatForAsync(agent, TimeSpan.FromSeconds(5), ct);
            cp.ProxyA.Restore();
            // Replica A reaches the database again (its sweep runs every 200 ms); replica B not yet, for less than
            // 2 × the flush interval + the grace (3 s): its first flush after the outage comes later than A's sweep.
            await HeartbeatForAsync(agent, TimeSpan.FromSeconds(1.5), ct);
        }
        finally
        {
            cp.ProxyA.Restore();
            cp.ProxyB.Restore();
        }

        // Replica B writes its buffered heartbeats; replica A's sweep runs many times meanwhile and after.
        await HeartbeatForAsync(agent, TimeSpan.FromSeconds(4), ct);

        agent.IsOpen.ShouldBeTrue($"the agent's socket was closed: {agent.CloseDescription}");
        var row = (await cp.AgentRowAsync(agentId))!;
        row.Status.ShouldBe(AgentStatus.Online);
        row.ConnectionId.ShouldBe(connectionId, "replica A's sweep took the row from the connection on replica B");
        row.LastHeartbeat!.Value.ShouldBeGreaterThan(DateTimeOffset.UtcNow - TimeSpan.FromSeconds(3));
    }

    private static async Task HeartbeatForAsync(ScriptedAgent agent, TimeSpan duration, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < duration)
        {
            await agent.HeartbeatAsync();
            await Task.Delay(TimeSpan.FromMilliseconds(400), ct);
        }
    }
}
