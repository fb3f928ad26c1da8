using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Text an agent sends that is longer than the column it would reach (PostgreSQL refuses it with 22001, SQLite stores
/// it): a session id is malformed input, closed with 1008 for that agent only; an error or crash reason is cut to its
/// column, never inside a surrogate pair (half a pair fails the statement on PostgreSQL and becomes U+FFFD on SQLite).
/// </summary>
public abstract class AgentLongTextTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);
    /// <summary>One character, two UTF-16 code units.</summary>
    private const string Emoji = "\U0001F600";

    [Fact]
    public Task A_session_status_with_an_id_longer_than_sessions_id_closes_that_agents_connection_and_no_other() =>
        // Unknown, so it would be tracked as running there and reconciliation would write a stop naming it.
        cp.BadReportClosesOnlyThatAgentAsync("long-status", bad => bad.StatusAsync(new string('s', SessionNames.MaxIdLength + 1), ObservedStates.Running));

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

    [Fact]
    public async Task Failed_starts_whose_error_or_reason_is_cut_inside_a_surrogate_pair_are_applied_next_to_another_agents_result()
    {
        var (longId, longToken) = await cp.CreateAgentAsync("long-error");
        await using var longError = await cp.OnlineAgentAsync(longId, longToken);
        var (reasonId, reasonToken) = await cp.CreateAgentAsync("long-reason");
        await using var longReason = await cp.OnlineAgentAsync(reasonId, reasonToken);
        var (peerId, peerToken) = await cp.CreateAgentAsync("peer");
        await using var peer = await cp.OnlineAgentAsync(peerId, peerToken);
        var longSession = await cp.CreateSessionAsync(longId, SessionState.Pending);
        var reasonSession = await cp.CreateSessionAsync(reasonId, SessionState.Pending);
        var peerSession = await cp.CreateSessionAsync(peerId, SessionState.Pending);
        var longCommand = await cp.EnqueueAsync(longId, longSession, CommandTypes.SessionStart);
        var reasonCommand = await cp.EnqueueAsync(reasonId, reasonSession, CommandTypes.SessionStart);
        var peerCommand = await cp.EnqueueAsync(peerId, peerSession, CommandTypes.SessionStart);
        (await longError.ExpectCommandAsync()).CommandId.ShouldBe(longCommand);
        (await longReason.ExpectCommandAsync()).CommandId.ShouldBe(reasonCommand);
        (await peer.ExpectCommandAsync()).CommandId.ShouldBe(peerCommand);

        // The pair straddles the error column's 2000th character in the first error, the reason column's 1000th
        // (after "start failed on agent {id}: ") in the second.
        var errorCut = new string('x', 1999);
        var reasonPrefix = $"start failed on agent {reasonId}: ";
        var reasonCut = new string('y', 999 - reasonPrefix.Length);
        await Task.WhenAll(
            longError.ResultAsync(longCommand, success: false, error: errorCut + Emoji + " and more"),
            longReason.ResultAsync(reasonCommand, success: false, error: reasonCut + Emoji + " and more"),
            peer.ResultAsync(peerCommand, success: true));

        await cp.SessionStateIsAsync(peerSession, SessionState.Running, Soon);
        await cp.SessionStateIsAsync(longSession, SessionState.Failed, Soon);
        await cp.SessionStateIsAsync(reasonSession, SessionState.Failed, Soon);
        (await cp.CommandRowAsync(longCommand)).Error.ShouldBe(errorCut);
        (await cp.SessionRowAsync(longSession)).Reason.ShouldBe(($"start failed on agent {longId}: " + errorCut)[..1000]);
        (await cp.CommandRowAsync(reasonCommand)).Error.ShouldBe(reasonCut + Emoji + " and more");
        (await cp.SessionRowAsync(reasonSession)).Reason.ShouldBe(reasonPrefix + reasonCut);
        longError.IsOpen.ShouldBeTrue();
        longReason.IsOpen.ShouldBeTrue();
    }

    [Fact]
    public async Task A_crash_reason_cut_inside_a_surrogate_pair_fails_the_session_with_the_text_before_it()
    {
        var (agentId, token) = await cp.CreateAgentAsync("long-crash");
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Running);
        // "crashed: " is 9 characters: the pair is the reason column's 1000th and 1001st code unit.
        var kept = new string('z', 990);

        await agent.StatusAsync(sessionId, ObservedStates.Crashed, kept + Emoji + " and more");

        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(sessionId)).Reason.ShouldBe("crashed: " + kept);
        agent.IsOpen.ShouldBeTrue();
    }
}

public sealed class AgentLongTextTests_Sqlite(HubSqliteControlPlane cp) : AgentLongTextTests(cp), IClassFixture<HubSqliteControlPlane>;
public sealed class AgentLongTextTests_Postgres(HubPostgresControlPlane cp) : AgentLongTextTests(cp), IClassFixture<HubPostgresControlPlane>;
