using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Text an agent sends that is longer than the column it would reach (PostgreSQL refuses it with 22001, SQLite stores
/// it): a session id is malformed input, closed with 1008 for that agent only.
/// </summary>
public abstract class AgentLongTextTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task A_session_status_with_an_id_longer_than_sessions_id_closes_that_agents_connection_and_no_other()
    {
        var (bystanderId, bystanderToken) = await cp.CreateAgentAsync("bystander");
        await using var bystander = await cp.OnlineAgentAsync(bystanderId, bystanderToken);
        var (badId, badToken) = await cp.CreateAgentAsync("long-status");
        await using var bad = await cp.OnlineAgentAsync(badId, badToken);
        var sessionId = await cp.CreateSessionAsync(bystanderId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(bystanderId, sessionId, CommandTypes.SessionStart);
        (await bystander.ExpectCommandAsync()).CommandId.ShouldBe(commandId);

        // Unknown, so it would be tracked as running there and reconciliation would write a stop naming it.
        await bad.StatusAsync(new string('s', SessionNames.MaxIdLength + 1), ObservedStates.Running);
        await bystander.AckAsync(commandId);
        await bystander.ResultAsync(commandId, success: true);

        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        bystander.IsOpen.ShouldBeTrue();
        (await cp.AgentRowAsync(bystanderId))!.Status.ShouldBe(AgentStatus.Online);
    }

    [Fact]
    public async Task An_unknown_session_with_an_id_as_long_as_sessions_id_is_stopped_as_an_orphan()
    {
        var (agentId, token) = await cp.CreateAgentAsync("orphan-200");
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var orphan = new string('o', SessionNames.MaxIdLength);

        await agent.StatusAsync(orphan, ObservedStates.Running);

        var stop = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(10));
        stop.Type.ShouldBe(CommandTypes.SessionStop);
        (await cp.CommandsForSessionAsync(orphan)).ShouldHaveSingleItem().Type.ShouldBe(CommandTypes.SessionStop);
        agent.IsOpen.ShouldBeTrue();
    }
}

public sealed class AgentLongTextTests_Sqlite(HubSqliteControlPlane cp) : AgentLongTextTests(cp), IClassFixture<HubSqliteControlPlane>;
public sealed class AgentLongTextTests_Postgres(HubPostgresControlPlane cp) : AgentLongTextTests(cp), IClassFixture<HubPostgresControlPlane>;
