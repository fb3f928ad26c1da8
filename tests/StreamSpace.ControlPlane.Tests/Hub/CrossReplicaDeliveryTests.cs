using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Two control-plane replicas on one PostgreSQL database (design §9), both with a delivery poll of 5 minutes, so only
/// the LISTEN/NOTIFY wake-up can bring a command written on replica A to an agent connected to replica B in seconds.
/// </summary>
public sealed class TwoReplicaControlPlane() : HubControlPlane(DatabaseKind.Postgres)
{
    private const string SlowPoll = "--StreamSpace:CommandPollInterval=00:05:00";

    protected override IEnumerable<string> ExtraArgs => [.. base.ExtraArgs, SlowPoll];

    public WebApplication ReplicaB { get; private set; } = null!;
    public Uri ReplicaBAddress { get; private set; } = null!;

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        (ReplicaB, ReplicaBAddress) = await StartReplicaAsync();
    }
}

[Trait("Category", "Timing")]
public sealed class CrossReplicaDeliveryTests_Postgres(TwoReplicaControlPlane cp) : IClassFixture<TwoReplicaControlPlane>
{
    [Fact]
    public async Task A_command_written_on_one_replica_reaches_the_agent_on_another_at_once_not_at_the_next_poll()
    {
        var (agent, sessionId) = await AgentOnReplicaBWithASessionAsync("xrep");
        await using var _ = agent;
        var metricsB = cp.ReplicaB.Services.GetRequiredService<HubMetrics>();
        var before = metricsB.CommandWakeUps;

        // Replica A takes the request and writes the stop command; the agent's socket is on replica B.
        await DeleteOnReplicaAAsync(sessionId);

        var command = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(5));
        command.Type.ShouldBe(CommandTypes.SessionStop);
        command.SessionId.ShouldBe(sessionId);
        metricsB.CommandWakeUps.ShouldBeGreaterThan(before);
        await agent.AckAsync(command.CommandId);
        await agent.ResultAsync(command.CommandId, success: true);

        // Once replica B has applied that result (nothing else then wakes its delivery for this agent), a create on
        // replica A: its start command is written with the session, in the same statement batch.
        await HubControlPlane.EventuallyAsync(
            async () => await cp.ScalarAsync<string>("SELECT state FROM sessions WHERE id = @sessionId", new { sessionId }) == "terminated",
            TimeSpan.FromSeconds(10), $"replica B applied the stop of {sessionId}");
        await Task.Delay(200, TestContext.Current.CancellationToken);
        var admin = await cp.AdminClientAsync();
        using (var create = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken))
            create.StatusCode.ShouldBe(HttpStatusCode.Created, await create.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        var start = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(5));
        start.Type.ShouldBe(CommandTypes.SessionStart);
    }

    [Fact]
    public async Task A_listener_whose_connection_died_listens_again_and_delivers_what_it_missed()
    {
        var (agent, sessionId) = await AgentOnReplicaBWithASessionAsync("xrelisten");
        await using var _ = agent;

        // Both replicas' LISTEN connections are cut (as a database restart or a proxy would), then A writes a command.
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
            (await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn,
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"))
                .ShouldBe(2, "one listener per replica");
        await DeleteOnReplicaAAsync(sessionId);

        // The notification may have gone to nobody; the listener's return delivers everything due (the poll is 5 min).
        var command = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(10));
        command.Type.ShouldBe(CommandTypes.SessionStop);
        command.SessionId.ShouldBe(sessionId);
    }

    [Fact]
    public async Task A_user_disabled_on_one_replica_loses_the_token_on_the_other_at_once()
    {
        var (_, id, token) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("xrepuser"));
        using var onB = new HttpClient { BaseAddress = cp.ReplicaBAddress };
        onB.DefaultRequestHeaders.Authorization = new("Bearer", token);
        await KeptUser.UntilKeptAsync(onB, cp.ReplicaB.Services.GetRequiredService<Identity.TokenUserLookup>());

        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var took = await HubControlPlane.EventuallyAsync(
            async () => (await onB.GetAsync("/api/v1/users/me")).StatusCode == HttpStatusCode.Unauthorized,
            TimeSpan.FromSeconds(3), "replica B refuses the disabled user's token");
        took.ShouldBeLessThan(Identity.TokenUserLookup.MaxAge);
    }

    [Fact]
    public async Task A_token_rotated_on_one_replica_closes_the_agents_connection_on_the_other()
    {
        var (agentId, token) = await cp.CreateAgentAsync("xrotate");
        await using var agent = await ScriptedAgent.OnlineAsync(cp.ReplicaBAddress, agentId, token);
        var admin = await cp.AdminClientAsync();
        using (var rotate = await admin.PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, TestContext.Current.CancellationToken))
            rotate.StatusCode.ShouldBe(HttpStatusCode.OK);

        // Replica A does not hold the socket: replica B's next heartbeat flush finds that the row no longer names it.
        (await agent.ClosedByServerAsync(TimeSpan.FromSeconds(5))).ShouldBe(System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation);
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.ReplicaBAddress, agentId, token)).ShouldBe(HttpStatusCode.Unauthorized);
        (await cp.AgentRowAsync(agentId))!.Status.ShouldBe(Agents.AgentStatus.Offline);
    }

    /// <summary>A new agent online on replica B, with a running session placed on it.</summary>
    private async Task<(ScriptedAgent Agent, string SessionId)> AgentOnReplicaBWithASessionAsync(string prefix)
    {
        var (agentId, token) = await cp.CreateAgentAsync(prefix);
        var agent = await ScriptedAgent.OnlineAsync(cp.ReplicaBAddress, agentId, token);
        return (agent, await cp.CreateSessionAsync(agentId, "running"));
    }

    /// <summary>Deletes the session through replica A (the fixture's own app): A writes the stop command.</summary>
    private async Task DeleteOnReplicaAAsync(string sessionId)
    {
        var admin = await cp.AdminClientAsync();
        using var delete = await admin.DeleteAsync($"/api/v1/sessions/{sessionId}", TestContext.Current.CancellationToken);
        delete.StatusCode.ShouldBe(HttpStatusCode.Accepted);
    }
}
