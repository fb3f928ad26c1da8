using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// The hub control plane plus a second replica on the same PostgreSQL database that is slow to notice a connection it
/// lost (heartbeat timeout 180 s, ownership sweep every 5 min) but reconciles every second: a connection of an agent
/// that moved on stays open there, as a half-open socket on a real replica does until its timeouts fire.
/// </summary>
public sealed class StaleReplicaControlPlane() : HubControlPlane(DatabaseKind.Postgres)
{
    public Uri StaleReplicaAddress { get; private set; } = null!;

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        (_, StaleReplicaAddress) = await StartReplicaAsync(
            "--StreamSpace:HeartbeatSeconds=60",
            "--StreamSpace:OfflineSweepInterval=00:05:00",
            "--StreamSpace:ReconcileInterval=00:00:01");
    }
}

/// <summary>
/// Invariant 1 and 4 across replicas: only the connection that owns the agent row (<c>agents.connection_id</c>) reconciles;
/// the inventory of a replaced connection is outdated and must never fail or stop what its successor runs.
/// </summary>
[Trait("Category", "Timing")]
public sealed class StaleConnectionTests_Postgres(StaleReplicaControlPlane cp) : IClassFixture<StaleReplicaControlPlane>
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task A_replaced_connection_still_open_on_another_replica_does_not_fail_the_session_its_successor_runs()
    {
        var (agentId, token) = await cp.CreateAgentAsync("moved");
        var session = await cp.CreateSessionAsync(agentId, SessionState.Starting);

        // C1 on the stale replica, half-open from now on (silent, never closed): its tracked inventory stays empty.
        await using var c1 = await ScriptedAgent.OnlineAsync(cp.StaleReplicaAddress, agentId, token, heartbeat: false);
        // The agent moves to the other replica: C2 takes over the row, and the session becomes running through it.
        await using var c2 = await cp.OnlineAgentAsync(agentId, token);
        (await cp.AgentRowAsync(agentId))!.ConnectionId.ShouldBe(c2.Welcome!.ConnectionId);
        await c2.StatusAsync(session, ObservedStates.Running);
        await cp.SessionStateIsAsync(session, SessionState.Running, Soon);

        // C2's own reconciliation still works: a session the database places there that C2 does not report is lost.
        var phantom = await cp.CreateSessionAsync(agentId, SessionState.Running);
        await cp.SessionStateIsAsync(phantom, SessionState.Failed, TimeSpan.FromSeconds(6));
        (await cp.SessionRowAsync(phantom)).Reason!.ShouldContain("lost on agent");

        // Several more 1 s passes of the stale replica, C1 still open there all along.
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);
        c1.IsOpen.ShouldBeTrue("the stale connection stayed open on its replica through those passes");
        var row = await cp.SessionRowAsync(session);
        row.State.ShouldBe(SessionState.Running, $"C1's outdated inventory must not count; reason: {row.Reason}");
        (await cp.CommandsForSessionAsync(session)).ShouldBeEmpty("nothing may stop the session C2 runs");
    }
}
