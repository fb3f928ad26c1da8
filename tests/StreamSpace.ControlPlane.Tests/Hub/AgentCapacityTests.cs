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

        var shown = await cp.AgentJsonAsync(agentId);
        shown.GetProperty("capacity").GetInt32().ShouldBe(2);
        shown.GetProperty("maxSessions").GetInt32().ShouldBe(20);
        shown.GetProperty("reportedCapacity").GetInt32().ShouldBe(2);
        shown.GetProperty("region").GetString().ShouldBe("eu", "the registered region wins over the hello's");

        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe("full: the agent reports capacity 2 (2 live; registered for 20)");

        // Heartbeats that report more make room, up to the registered maximum.
        agent.MaxSessions = 3;
        await HubControlPlane.EventuallyAsync(async () => (await cp.AgentJsonAsync(agentId)).GetProperty("capacity").GetInt32() == 3, Soon,
            "the heartbeat's capacity was written");
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe("full: the agent reports capacity 3 (3 live; registered for 20)");
    }

    [Fact]
    public async Task An_agent_reporting_more_than_its_registered_maximum_gets_the_registered_maximum()
    {
        var (agentId, token) = await cp.CreateAgentAsync("reports10", maxSessions: 1);
        await using var agent = await cp.OnlineAgentAsync(agentId, token); // reports 10

        (await cp.AgentJsonAsync(agentId)).GetProperty("capacity").GetInt32().ShouldBe(1);
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe(agentId);
        (await cp.PlaceOnlyOnAsync(agentId)).ShouldBe("full: 1/1 sessions, its registered maximum");
    }
}

[Trait("Category", "Timing")]
public sealed class AgentCapacityTests_Sqlite(HubSqliteControlPlane cp) : AgentCapacityTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class AgentCapacityTests_Postgres(HubPostgresControlPlane cp) : AgentCapacityTests(cp), IClassFixture<HubPostgresControlPlane>;
