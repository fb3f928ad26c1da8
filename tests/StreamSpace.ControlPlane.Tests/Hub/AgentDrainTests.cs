using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// An agent's own drain against an admin's (the agent's report sets and clears its own; only an admin lifts theirs), over
/// real sockets.
/// </summary>
public abstract class AgentDrainTests(HubControlPlane cp)
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
        var shown = await AgentAsync(agentId);
        shown.GetProperty("draining").GetBoolean().ShouldBeTrue();
        shown.GetProperty("agentDraining").GetBoolean().ShouldBeTrue();
        shown.GetProperty("adminDraining").GetBoolean().ShouldBeFalse();
        (await PlaceAsync(agentId)).ShouldBe("draining (the agent is stopping)");
        await first.DisposeAsync();
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, Soon);

        // The restarted agent's hello says draining: false; that clears its own drain at once.
        await using var restarted = await cp.OnlineAgentAsync(agentId, token);
        (await cp.AgentRowAsync(agentId))!.AgentDraining.ShouldBeFalse();
        (await AgentAsync(agentId)).GetProperty("draining").GetBoolean().ShouldBeFalse();
        (await PlaceAsync(agentId)).ShouldBe(agentId);
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
            var shown = await AgentAsync(agentId);
            shown.GetProperty("draining").GetBoolean().ShouldBeTrue();
            shown.GetProperty("adminDraining").GetBoolean().ShouldBeTrue();
            shown.GetProperty("agentDraining").GetBoolean().ShouldBeFalse();
            (await PlaceAsync(agentId)).ShouldBe("draining");

            var lifted = await (await admin.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            lifted.GetProperty("draining").GetBoolean().ShouldBeFalse();
            lifted.GetProperty("adminDraining").GetBoolean().ShouldBeFalse();
            await (await admin.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            await (await admin.PostAsync("/api/v1/agents/no-such-agent/undrain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.undrained' AND target = @agentId", new { agentId })).ShouldBe(2);
            (await PlaceAsync(agentId)).ShouldBe(agentId);
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

    private async Task<JsonElement> AgentAsync(string agentId)
    {
        var admin = await cp.AdminClientAsync();
        return await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
    }

    /// <summary>
    /// Creates a session through the API with every other agent drained by an admin (the class has its control plane to
    /// itself), so placement can choose only <paramref name="agentId"/>: returns the agent chosen, or why this one was not.
    /// </summary>
    private async Task<string> PlaceAsync(string agentId)
    {
        await cp.ExecuteAsync("UPDATE agents SET draining = @yes WHERE agent_id <> @agentId", new { yes = true, agentId });
        var (client, _, _) = await cp.QuickUserAsync("placed");
        using var response = await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct);
        if (response.StatusCode == HttpStatusCode.Created)
            return (await response.ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("agentId").GetString()!;
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
        return error.GetProperty("reasons").EnumerateArray()
            .Single(r => r.GetProperty("agentId").GetString() == agentId).GetProperty("reason").GetString()!;
    }
}

[Trait("Category", "Timing")]
public sealed class AgentDrainTests_Sqlite(HubSqliteControlPlane cp) : AgentDrainTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class AgentDrainTests_Postgres(HubPostgresControlPlane cp) : AgentDrainTests(cp), IClassFixture<HubPostgresControlPlane>;
