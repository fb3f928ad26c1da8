using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Text an agent sends with the character U+0000, which PostgreSQL refuses (SQLite keeps it): in a hello or an id it is
/// malformed input, refused or closed with 1008 for that agent only, while other agents' hellos and reports written
/// at the same time go through; in an error or crash reason (which may quote an app's output) it is kept, replaced.
/// </summary>
public abstract class AgentNulTextTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    private static HelloPayload Hello(string agentId, string field) => new()
    {
        AgentId = agentId,
        Version = field == "version" ? "1.0\0" : "1.0",
        Platform = Platforms.Process,
        Region = field == "region" ? "eu\0" : "default",
        Capacity = new AgentCapacity { MaxSessions = 10 },
        SessionLimits = field == "sessionLimits" ? "not enforced: \0" : null,
        Inventory = field == "inventory" ? [new SessionInventoryItem { SessionId = "s\0", State = ObservedStates.Running }] : [],
    };

    [Theory]
    [InlineData("version")]
    [InlineData("region")]
    [InlineData("sessionLimits")]
    [InlineData("inventory")]
    public async Task A_hello_with_a_nul_is_refused_and_the_hellos_sent_with_it_are_welcomed(string field)
    {
        var (badId, badToken) = await cp.CreateAgentAsync("nul-hello");
        await using var bad = await ScriptedAgent.ConnectAsync(cp.BaseAddress, badId, badToken);
        var others = new List<ScriptedAgent>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var (id, token) = await cp.CreateAgentAsync("hello-peer");
                others.Add(await ScriptedAgent.ConnectAsync(cp.BaseAddress, id, token));
            }
            // All at once, so the hellos are written together.
            var welcomes = others.Select(a => a.HelloAsync()).ToList();
            await bad.SendAsync(Envelope.Create(MessageTypes.Hello, Hello(badId, field), DateTimeOffset.UtcNow));

            var refused = await bad.NextAsync(Soon);
            refused.ShouldNotBeNull("the bad hello got no answer");
            refused.Type.ShouldBe(MessageTypes.Refused);
            var refusal = refused.PayloadAs<RefusedPayload>();
            refusal.Code.ShouldBe("invalid_hello");
            refusal.Reason.ShouldContain("U+0000");
            (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
            foreach (var welcome in welcomes) (await welcome).ShouldNotBeNull();
            foreach (var agent in others) (await cp.AgentRowAsync(agent.AgentId))!.Status.ShouldBe(AgentStatus.Online);
            (await cp.AgentRowAsync(badId))!.Status.ShouldBe(AgentStatus.Offline);
        }
        finally
        {
            foreach (var agent in others) await agent.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(MessageTypes.Ack)]
    [InlineData(MessageTypes.Result)]
    [InlineData(MessageTypes.SessionStatus)]
    public Task A_report_with_a_nul_in_its_id_closes_that_agents_connection_and_no_other(string type) =>
        cp.BadReportClosesOnlyThatAgentAsync("nul-report", bad => type switch
        {
            MessageTypes.Ack => bad.AckAsync("c\0"),
            MessageTypes.Result => bad.ResultAsync("c\0", success: true),
            _ => bad.StatusAsync("s\0", ObservedStates.Running),
        });

    [Fact]
    public async Task A_failed_start_whose_error_has_a_nul_is_applied_with_it_replaced_next_to_another_agents_result()
    {
        var (firstId, firstToken) = await cp.CreateAgentAsync("nul-error");
        await using var first = await cp.OnlineAgentAsync(firstId, firstToken);
        var (secondId, secondToken) = await cp.CreateAgentAsync("peer");
        await using var second = await cp.OnlineAgentAsync(secondId, secondToken);
        var failing = await cp.CreateSessionAsync(firstId, SessionState.Pending);
        var starting = await cp.CreateSessionAsync(secondId, SessionState.Pending);
        var failingCommand = await cp.EnqueueAsync(firstId, failing, CommandTypes.SessionStart);
        var startingCommand = await cp.EnqueueAsync(secondId, starting, CommandTypes.SessionStart);
        (await first.ExpectCommandAsync()).CommandId.ShouldBe(failingCommand);
        (await second.ExpectCommandAsync()).CommandId.ShouldBe(startingCommand);

        await Task.WhenAll(
            first.ResultAsync(failingCommand, success: false, error: "Xvnc said \0 and quit"),
            second.ResultAsync(startingCommand, success: true));

        await cp.SessionStateIsAsync(failing, SessionState.Failed, Soon);
        await cp.SessionStateIsAsync(starting, SessionState.Running, Soon);
        (await cp.CommandRowAsync(failingCommand)).Error.ShouldBe("Xvnc said \uFFFD and quit");
        (await cp.SessionRowAsync(failing)).Reason!.ShouldEndWith(": Xvnc said \uFFFD and quit");
        first.IsOpen.ShouldBeTrue();
    }

    [Fact]
    public async Task A_crash_reason_with_a_nul_fails_the_session_with_it_replaced()
    {
        var (agentId, token) = await cp.CreateAgentAsync("nul-crash");
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Running);

        await agent.StatusAsync(sessionId, ObservedStates.Crashed, "app log: \0\0 segfault");

        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(sessionId)).Reason.ShouldBe("crashed: app log: \uFFFD\uFFFD segfault");
        agent.IsOpen.ShouldBeTrue();
    }
}

public sealed class AgentNulTextTests_Sqlite(HubSqliteControlPlane cp) : AgentNulTextTests(cp), IClassFixture<HubSqliteControlPlane>;
public sealed class AgentNulTextTests_Postgres(HubPostgresControlPlane cp) : AgentNulTextTests(cp), IClassFixture<HubPostgresControlPlane>;
