using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// What an agent reports about itself against what an admin registered: placement fills an agent only up to the smaller
/// of the registered maximum and the capacity the agent reports (hello and heartbeats), since the agent refuses a start
/// beyond its own figure; the registered region wins over the hello's. Real sockets, real create requests.
/// </summary>
public abstract class AgentCapacityTests(HubControlPlane cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task An_agent_reporting_less_than_its_registered_maximum_gets_no_more_and_the_next_create_is_503_saying_why()
    {
        var (agentId, token) = await cp.CreateAgentAsync("reports2", maxSessions: 20, region: "eu");
        await using var agent = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
        agent.MaxSessions = 2; // started without STREAMSPACE_MAX_SESSIONS=20, say
        agent.Region = "default";
        (await agent.HelloAsync()).ShouldNotBeNull();
        agent.StartHeartbeats(); // each says maxSessions as it is then

        var shown = await AgentAsync(agentId);
        shown.GetProperty("capacity").GetInt32().ShouldBe(2);
        shown.GetProperty("maxSessions").GetInt32().ShouldBe(20);
        shown.GetProperty("reportedCapacity").GetInt32().ShouldBe(2);
        shown.GetProperty("region").GetString().ShouldBe("eu", "the registered region wins over the hello's");

        (await PlaceAsync(agentId)).ShouldBe(agentId);
        (await PlaceAsync(agentId)).ShouldBe(agentId);
        (await PlaceAsync(agentId)).ShouldBe("full: the agent reports capacity 2 (2 live; registered for 20)");

        // Heartbeats that report more make room, up to the registered maximum.
        agent.MaxSessions = 3;
        await HubControlPlane.EventuallyAsync(async () => (await AgentAsync(agentId)).GetProperty("capacity").GetInt32() == 3, Soon,
            "the heartbeat's capacity was written");
        (await PlaceAsync(agentId)).ShouldBe(agentId);
        (await PlaceAsync(agentId)).ShouldBe("full: the agent reports capacity 3 (3 live; registered for 20)");
    }

    [Fact]
    public async Task An_agent_reporting_more_than_its_registered_maximum_gets_the_registered_maximum()
    {
        var (agentId, token) = await cp.CreateAgentAsync("reports10", maxSessions: 1);
        await using var agent = await cp.OnlineAgentAsync(agentId, token); // reports 10

        (await AgentAsync(agentId)).GetProperty("capacity").GetInt32().ShouldBe(1);
        (await PlaceAsync(agentId)).ShouldBe(agentId);
        (await PlaceAsync(agentId)).ShouldBe("full: 1/1 sessions, its registered maximum");
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
public sealed class AgentCapacityTests_Sqlite(HubSqliteControlPlane cp) : AgentCapacityTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class AgentCapacityTests_Postgres(HubPostgresControlPlane cp) : AgentCapacityTests(cp), IClassFixture<HubPostgresControlPlane>;
