using System.Diagnostics;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The hub control plane (1 s heartbeats, offline after 3 s of silence, database sweep grace 1 s) on PostgreSQL behind a
/// <see cref="TcpProxy"/> that can cut the database away. The database sweep runs every 200 ms, far more often than the
/// heartbeat flush (1 s), so right after the database is back the sweep is the first to reach it.
/// </summary>
public sealed class ProxiedHubControlPlane() : HubControlPlane(DatabaseKind.Postgres)
{
    private TcpProxy? _proxy;

    public TcpProxy Proxy => _proxy ?? throw new InvalidOperationException("Not initialized");

    protected override IEnumerable<string> ExtraArgs
    {
        get
        {
            var direct = new Uri(Database.Setting);
            _proxy ??= new TcpProxy(direct.Host, direct.Port);
            return
            [
                .. base.ExtraArgs,
                "--StreamSpace:OfflineSweepInterval=00:00:00.200",
                $"--StreamSpace:Database={direct.Scheme}://{direct.UserInfo}@127.0.0.1:{_proxy.Port}{direct.AbsolutePath}",
            ];
        }
    }

    public override async ValueTask DisposeAsync()
    {
        _proxy?.Restore();
        await base.DisposeAsync();
        if (_proxy is not null) await _proxy.DisposeAsync();
    }
}

/// <summary>
/// Invariant 1 through a database outage: an agent that kept its socket and kept heartbeating is online, before, during
/// (as far as this replica knows) and after. The heartbeats the replica could not write meanwhile are not lost, so the
/// database sweep (meant for agents of a replica that died) never takes it for silent and never closes its socket.
/// </summary>
[Trait("Category", "Timing")]
public sealed class OpsDatabaseOutageAgentTests(ProxiedHubControlPlane cp) : IClassFixture<ProxiedHubControlPlane>
{
    [Fact]
    public async Task An_agent_heartbeating_through_a_database_outage_longer_than_the_offline_timeout_stays_connected_and_online()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("outage");
        // Heartbeats by hand, so the test knows which ones fell into the outage.
        await using var agent = await cp.OnlineAgentAsync(agentId, token, heartbeat: false);
        var connectionId = agent.Welcome!.ConnectionId;

        cp.Proxy.Cut();
        try
        {
            // Longer than the offline timeout plus the sweep's grace (3 s + 1 s): the row's last heartbeat is that old
            // when the database comes back, though the agent never went quiet.
            var outage = Stopwatch.StartNew();
            while (outage.Elapsed < TimeSpan.FromSeconds(5))
            {
                await agent.HeartbeatAsync();
                await Task.Delay(TimeSpan.FromMilliseconds(400), ct);
            }
            await agent.HeartbeatAsync();
            // The last heartbeat is older than a flush interval when the database is back: a failed flush took it.
            await Task.Delay(TimeSpan.FromSeconds(1.2), ct);
        }
        finally
        {
            cp.Proxy.Restore();
        }

        // Several sweeps run before the agent's next heartbeat (within its 3 s timeout).
        await Task.Delay(TimeSpan.FromSeconds(1), ct);
        var after = Stopwatch.StartNew();
        while (after.Elapsed < TimeSpan.FromSeconds(3))
        {
            await agent.HeartbeatAsync();
            await Task.Delay(TimeSpan.FromMilliseconds(400), ct);
        }

        agent.IsOpen.ShouldBeTrue($"the agent's socket was closed: {agent.CloseDescription}");
        var row = (await cp.AgentRowAsync(agentId))!;
        row.Status.ShouldBe(AgentStatus.Online);
        row.ConnectionId.ShouldBe(connectionId);
        row.LastHeartbeat!.Value.ShouldBeGreaterThan(DateTimeOffset.UtcNow - TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_session_status_the_database_did_not_take_is_applied_once_it_is_back_not_taken_for_lost()
    {
        var ct = TestContext.Current.CancellationToken;
        var (_, _, agent, exits, stays) = await TwoRunningSessionsAsync("outage-status");
        await using var online = agent;

        // Long enough for the event to fail against the cut database and for a reconciliation (every 2 s) to run.
        await DuringAnOutageAsync(() => agent.StatusAsync(exits, ObservedStates.Exited), TimeSpan.FromSeconds(3));

        await cp.SessionStateIsAsync(exits, SessionState.Terminated, TimeSpan.FromSeconds(10));
        (await cp.SessionRowAsync(exits)).Reason.ShouldBe("app exited");
        // Reconciliations after the outage leave the other session as the agent reports it.
        await Task.Delay(TimeSpan.FromSeconds(2.5), ct);
        (await cp.SessionRowAsync(stays)).State.ShouldBe(SessionState.Running);
        agent.IsOpen.ShouldBeTrue($"the agent's socket was closed: {agent.CloseDescription}");
    }

    [Fact]
    public async Task A_held_back_session_status_is_applied_when_its_connection_ends_not_lost_with_it()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token, agent, exits, stays) = await TwoRunningSessionsAsync("outage-close");

        await DuringAnOutageAsync(() => agent.StatusAsync(exits, ObservedStates.Exited), TimeSpan.FromSeconds(3));
        // The connection ends (the agent reconnects, say) with the event still held, before a reconciliation retried it.
        // The agent, having reported it on a connection that stayed up, will not list the session again.
        await agent.DisposeAsync();

        await cp.SessionStateIsAsync(exits, SessionState.Terminated, TimeSpan.FromSeconds(10));
        (await cp.SessionRowAsync(exits)).Reason.ShouldBe("app exited");
        await using var again = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = stays, State = ObservedStates.Running }]);
        await Task.Delay(TimeSpan.FromSeconds(2.5), ct);
        (await cp.SessionRowAsync(exits)).State.ShouldBe(SessionState.Terminated);
        (await cp.SessionRowAsync(stays)).State.ShouldBe(SessionState.Running);
    }

    [Fact]
    public async Task An_ended_session_in_a_hello_the_database_did_not_take_is_applied_later_not_failed_as_lost_meanwhile()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("outage-hello");
        var exits = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var stays = await cp.CreateSessionAsync(agentId, SessionState.Running);
        // The database refuses to end this session (as in an outage), and only that: failing it as lost would still work.
        var trigger = ControlPlaneFixture.Unique("fail_end_");
        await cp.ExecuteAsync($"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
            CREATE TRIGGER {trigger} BEFORE UPDATE ON sessions FOR EACH ROW WHEN (NEW.id = '{exits}' AND NEW.state = '{SessionState.Terminated}') EXECUTE FUNCTION {trigger}();
            """, new { });
        ScriptedAgent agent;
        try
        {
            agent = await cp.OnlineAgentAsync(agentId, token,
            [
                new SessionInventoryItem { SessionId = stays, State = ObservedStates.Running },
                new SessionInventoryItem { SessionId = exits, State = ObservedStates.Exited, Reason = "app exited with code 0" },
            ]);
            // The hello's own reconciliation and one more (every 2 s) while the database refuses the ended session.
            await Task.Delay(TimeSpan.FromSeconds(3), ct);
            (await cp.SessionRowAsync(exits)).State.ShouldBe(SessionState.Running, "not failed as lost while its end waits");
        }
        finally
        {
            await cp.ExecuteAsync($"DROP TRIGGER {trigger} ON sessions; DROP FUNCTION {trigger}();", new { });
        }
        await using var online = agent;

        await cp.SessionStateIsAsync(exits, SessionState.Terminated, TimeSpan.FromSeconds(10));
        (await cp.SessionRowAsync(exits)).Reason.ShouldBe("app exited");
        (await cp.SessionRowAsync(stays)).State.ShouldBe(SessionState.Running);
        agent.IsOpen.ShouldBeTrue($"the agent's socket was closed: {agent.CloseDescription}");
    }

    [Fact]
    public async Task A_held_back_session_status_is_applied_before_a_later_result_so_a_stopped_session_is_not_stopped_again_as_an_orphan()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("outage-order");
        var stopped = await cp.CreateSessionAsync(agentId, SessionState.Terminating);
        await using var agent = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = stopped, State = ObservedStates.Running }]);
        // Its stop: the hello's reconciliation queues it (a session being terminated that the agent still runs).
        var stop = await agent.ExpectCommandAsync();
        (stop.Type, stop.SessionId).ShouldBe((CommandTypes.SessionStop, stopped));
        var stopId = stop.CommandId;
        await agent.AckAsync(stopId);
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(stopId)).State == CommandState.Acked, TimeSpan.FromSeconds(5), "the ack applied");

        // The agent reports the session running (its display came back, say) during the outage, then, once the database
        // is back, that the stop succeeded: in that order.
        await DuringAnOutageAsync(() => agent.StatusAsync(stopped, ObservedStates.Running), TimeSpan.FromSeconds(1));
        await agent.ResultAsync(stopId, success: true);

        await cp.SessionStateIsAsync(stopped, SessionState.Terminated, TimeSpan.FromSeconds(5));
        // A reconciliation (every 2 s) after both: the session is no longer tracked, so no stop is queued for it again.
        await Task.Delay(TimeSpan.FromSeconds(2.5), ct);
        (await cp.CommandsForSessionAsync(stopped)).Select(c => c.Id).ShouldBe([stopId], "no orphan stop for a session the agent stopped");
        (await cp.SessionRowAsync(stopped)).State.ShouldBe(SessionState.Terminated);
    }

    /// <summary>An agent online with two running sessions it reports: one a test ends, one that must stay running.</summary>
    private async Task<(string AgentId, string Token, ScriptedAgent Agent, string Exits, string Stays)> TwoRunningSessionsAsync(string prefix)
    {
        var (agentId, token) = await cp.CreateAgentAsync(prefix);
        var exits = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var stays = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var agent = await cp.OnlineAgentAsync(agentId, token,
        [
            new SessionInventoryItem { SessionId = exits, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = stays, State = ObservedStates.Running },
        ]);
        return (agentId, token, agent, exits, stays);
    }

    /// <summary>Cuts the database, sends what <paramref name="report"/> sends, waits <paramref name="hold"/> for the control
    /// plane to fail on it, and restores the database.</summary>
    private async Task DuringAnOutageAsync(Func<Task> report, TimeSpan hold)
    {
        cp.Proxy.Cut();
        try
        {
            await report();
            await Task.Delay(hold, TestContext.Current.CancellationToken);
        }
        finally
        {
            cp.Proxy.Restore();
        }
    }
}
