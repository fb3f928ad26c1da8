using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// An agent's own drain against an admin's (the agent's report sets and clears its own; only an admin lifts theirs), and
/// token rotation (the old token ends at once, the live connection is closed, sessions stay), over real sockets.
/// </summary>
public abstract class AgentDrainAndTokenTests(HubControlPlane cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task A_self_drained_agent_that_restarts_saying_it_is_not_draining_is_placeable_again()
    {
        var (agentId, token) = await cp.CreateAgentAsync("selfdrain");
        var first = await cp.OnlineAgentAsync(agentId, token, heartbeat: false);
        // SIGTERM: the agent says it drains, and the heartbeat reaches the row before it goes.
        await first.HeartbeatAsync(draining: true);
        await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync(agentId))!.AgentDraining, Soon, "the agent's own drain was written");
        var shown = await cp.AgentJsonAsync(agentId);
        shown.GetProperty("draining").GetBoolean().ShouldBeTrue();
        shown.GetProperty("agentDraining").GetBoolean().ShouldBeTrue();
        shown.GetProperty("adminDraining").GetBoolean().ShouldBeFalse();
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe("draining (the agent is stopping)");
        await first.DisposeAsync();
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, Soon);

        // The restarted agent's hello says draining: false; that clears its own drain at once.
        await using var restarted = await cp.OnlineAgentAsync(agentId, token);
        (await cp.AgentRowAsync(agentId))!.AgentDraining.ShouldBeFalse();
        (await cp.AgentJsonAsync(agentId)).GetProperty("draining").GetBoolean().ShouldBeFalse();
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
    }

    [Fact]
    public async Task An_admin_drain_survives_the_agents_hello_and_heartbeats_until_an_admin_lifts_it()
    {
        var (agentId, token) = await cp.CreateAgentAsync("admindrain");
        var admin = await cp.AdminClientAsync();
        await using (await cp.OnlineAgentAsync(agentId, token))
        {
            var drained = await (await admin.PostAsync($"/api/v1/agents/{agentId}/drain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            drained.GetProperty("adminDraining").GetBoolean().ShouldBeTrue();
        }
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, Soon);

        // A reconnect saying "not draining", and heartbeats saying the same, leave the admin's drain in force.
        await using (await cp.OnlineAgentAsync(agentId, token))
        {
            var before = (await cp.AgentRowAsync(agentId))!.LastHeartbeat!.Value;
            await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync(agentId))!.LastHeartbeat > before, Soon, "a heartbeat was flushed");
            var shown = await cp.AgentJsonAsync(agentId);
            shown.GetProperty("draining").GetBoolean().ShouldBeTrue();
            shown.GetProperty("adminDraining").GetBoolean().ShouldBeTrue();
            shown.GetProperty("agentDraining").GetBoolean().ShouldBeFalse();
            (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe("draining");

            var lifted = await (await admin.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            lifted.GetProperty("draining").GetBoolean().ShouldBeFalse();
            lifted.GetProperty("adminDraining").GetBoolean().ShouldBeFalse();
            await (await admin.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            await (await admin.PostAsync("/api/v1/agents/no-such-agent/undrain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.undrained' AND target = @agentId", new { agentId })).ShouldBe(2);
            (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
        }

        // Lifting the admin's drain does not lift the agent's own (here from a hello of an agent that starts draining).
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, Soon);
        await using var stopping = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
        (await stopping.HelloAsync(draining: true)).ShouldNotBeNull();
        (await cp.AgentRowAsync(agentId))!.AgentDraining.ShouldBeTrue();
        var stillDraining = await (await admin.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        stillDraining.GetProperty("draining").GetBoolean().ShouldBeTrue();
        stillDraining.GetProperty("agentDraining").GetBoolean().ShouldBeTrue();
    }

    [Fact]
    public async Task Rotation_refuses_the_old_token_closes_the_live_connection_and_leaves_the_sessions_running()
    {
        var (agentId, oldToken) = await cp.CreateAgentAsync("rotate");
        var running = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var inventory = new[] { new SessionInventoryItem { SessionId = running, State = ObservedStates.Running } };
        await using var old = await cp.OnlineAgentAsync(agentId, oldToken, inventory);
        var admin = await cp.AdminClientAsync();

        var rotated = await (await admin.PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        rotated.GetProperty("agentId").GetString().ShouldBe(agentId);
        var newToken = rotated.GetProperty("token").GetString()!;
        newToken.ShouldStartWith("ssa_");
        newToken.ShouldNotBe(oldToken);
        (await cp.ScalarAsync<string>("SELECT token_hash FROM agents WHERE agent_id = @agentId", new { agentId })).ShouldBe(AgentTokens.Hash(newToken));
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.token_rotated' AND target = @agentId", new { agentId })).ShouldBe(1);

        // The holder of the old token is cut off at once and cannot come back.
        (await old.ClosedByServerAsync(TimeSpan.FromSeconds(3))).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        (await cp.AgentRowAsync(agentId))!.Status.ShouldBe(AgentStatus.Offline);
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, agentId, oldToken)).ShouldBe(HttpStatusCode.Unauthorized);

        // The rotation itself touches no session: not while the agent is away, not when it returns with the new token.
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        (await cp.SessionRowAsync(running)).State.ShouldBe(SessionState.Running);
        await using var renewed = await cp.OnlineAgentAsync(agentId, newToken, inventory);
        var row = (await cp.AgentRowAsync(agentId))!;
        row.Status.ShouldBe(AgentStatus.Online);
        row.ConnectionId.ShouldBe(renewed.Welcome!.ConnectionId);
        await Task.Delay(TimeSpan.FromSeconds(2.5), Ct); // a periodic reconciliation pass too
        (await cp.SessionRowAsync(running)).State.ShouldBe(SessionState.Running);
        (await cp.CommandsForSessionAsync(running)).ShouldBeEmpty();
        renewed.IsOpen.ShouldBeTrue();

        await (await admin.PostAsync("/api/v1/agents/no-such-agent/rotate-token", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_socket_authenticated_with_the_old_token_before_the_rotation_is_refused_at_its_hello()
    {
        var (agentId, oldToken) = await cp.CreateAgentAsync("rotate-race");
        await using var early = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, oldToken); // upgraded, no hello yet
        var admin = await cp.AdminClientAsync();
        await (await admin.PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        (await early.HelloAsync()).ShouldBeNull();
        early.Refusal!.Code.ShouldBe("unknown_agent");
        (await early.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        var row = (await cp.AgentRowAsync(agentId))!;
        row.Status.ShouldBe(AgentStatus.Offline);
        row.ConnectionId.ShouldBeNull();
    }
}

[Trait("Category", "Timing")]
public sealed class AgentDrainAndTokenTests_Sqlite(HubSqliteControlPlane cp) : AgentDrainAndTokenTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class AgentDrainAndTokenTests_Postgres(HubPostgresControlPlane cp) : AgentDrainAndTokenTests(cp), IClassFixture<HubPostgresControlPlane>;
