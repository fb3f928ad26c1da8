using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>Invariant 4: on every hello the agent's inventory is reconciled with the sessions placed on it; session.status events apply too.</summary>
public abstract class ReconciliationTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    /// <summary>
    /// An agent that died between saving a session and saving its start's result re-adopts the session and (older agents)
    /// answers the start as interrupted. That failure moves nothing (the session is running by the hello), and it must not
    /// make the control plane forget the agent runs it: the periodic pass failed it "lost on agent" with no stop written.
    /// </summary>
    [Fact]
    public async Task A_failed_start_result_for_a_session_the_agent_reports_running_leaves_it_running_through_later_passes()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var session = await cp.CreateSessionAsync(agentId, SessionState.Starting);
        var start = await cp.EnqueueAsync(agentId, session, CommandTypes.SessionStart);
        await using var agent = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = session, State = ObservedStates.Running }]);
        await cp.SessionStateIsAsync(session, SessionState.Running, Soon);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(start);
        await agent.AckAsync(start);
        await agent.ResultAsync(start, success: false, error: "the agent restarted while the command ran");
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandsForSessionAsync(session)).Single().State == CommandState.Failed, Soon,
            "the start's result applied");

        // Two periodic passes (every 2 s here) after the result.
        await Task.Delay(TimeSpan.FromSeconds(4.5), TestContext.Current.CancellationToken);
        var row = await cp.SessionRowAsync(session);
        row.State.ShouldBe(SessionState.Running, $"reason: {row.Reason}");
        (await cp.CommandsForSessionAsync(session)).Select(c => c.Type).ShouldBe([CommandTypes.SessionStart], "no stop: the session is wanted");
    }

    [Fact]
    public async Task Hello_adopts_running_sessions_fails_lost_ones_ends_terminating_ones_and_stops_orphans()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var adopted = await cp.CreateSessionAsync(agentId, SessionState.Starting);
        var adoptedHibernated = await cp.CreateSessionAsync(agentId, SessionState.Hibernating);
        var lost = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var lostHibernated = await cp.CreateSessionAsync(agentId, SessionState.Hibernated);
        var stopping = await cp.CreateSessionAsync(agentId, SessionState.Terminating);
        var notStartedYet = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var startCommand = await cp.EnqueueAsync(agentId, notStartedYet, CommandTypes.SessionStart);
        var finished = await cp.CreateSessionAsync(agentId, SessionState.Terminated);
        var unknown = "ghost-xterm-" + Guid.NewGuid().ToString("N")[..6];
        var steady = await cp.CreateSessionAsync(agentId, SessionState.Running);

        await using var agent = await cp.OnlineAgentAsync(agentId, token,
        [
            new SessionInventoryItem { SessionId = adopted, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = adoptedHibernated, State = ObservedStates.Hibernated },
            new SessionInventoryItem { SessionId = finished, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = unknown, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = steady, State = ObservedStates.Running },
        ]);

        // Reconciliation runs right after the welcome.
        await cp.SessionStateIsAsync(adopted, SessionState.Running, Soon);
        (await cp.SessionRowAsync(adoptedHibernated)).State.ShouldBe(SessionState.Hibernated);
        var lostRow = await cp.SessionRowAsync(lost);
        lostRow.State.ShouldBe(SessionState.Failed);
        lostRow.Reason!.ShouldContain("lost on agent");
        lostRow.Reason!.ShouldContain(agentId);
        (await cp.SessionRowAsync(lostHibernated)).State.ShouldBe(SessionState.Failed);
        (await cp.SessionRowAsync(stopping)).State.ShouldBe(SessionState.Terminated);
        (await cp.SessionRowAsync(notStartedYet)).State.ShouldBe(SessionState.Pending, "its start command has not succeeded yet");
        (await cp.SessionRowAsync(steady)).State.ShouldBe(SessionState.Running);

        // The agent gets the pending start and a stop for each orphan, and nothing else.
        var received = new List<CommandPayload>();
        for (var i = 0; i < 3; i++) received.Add(await agent.ExpectCommandAsync());
        received.Single(c => c.Type == CommandTypes.SessionStart).CommandId.ShouldBe(startCommand);
        received.Where(c => c.Type == CommandTypes.SessionStop).Select(c => c.SessionId).OrderBy(x => x)
            .ShouldBe(new[] { finished, unknown }.OrderBy(x => x));
        foreach (var c in received) await agent.AckAsync(c.CommandId);
        foreach (var c in received.Where(c => c.Type == CommandTypes.SessionStop)) await agent.ResultAsync(c.CommandId, success: true);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(1.5));
        (await cp.SessionRowAsync(finished)).State.ShouldBe(SessionState.Terminated, "a stop of an orphan never revives a finished session");
    }

    [Fact]
    public async Task Reconnecting_again_does_not_queue_a_second_stop_for_the_same_orphan()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var unknown = "ghost-xterm-" + Guid.NewGuid().ToString("N")[..6];
        SessionInventoryItem[] inventory = [new SessionInventoryItem { SessionId = unknown, State = ObservedStates.Running }];
        var first = await cp.OnlineAgentAsync(agentId, token, inventory);
        var stop = await first.ExpectCommandAsync();
        stop.SessionId.ShouldBe(unknown);
        await first.CloseAsync();
        await first.DisposeAsync();
        await cp.AgentStatusIsAsync(agentId, Agents.AgentStatus.Offline, Soon);

        await using var second = await cp.OnlineAgentAsync(agentId, token, inventory);
        (await second.ExpectCommandAsync()).CommandId.ShouldBe(stop.CommandId, "the same stop is redelivered, not a new one");
        (await cp.CommandsForSessionAsync(unknown)).Count.ShouldBe(1);
    }

    [Fact]
    public async Task A_session_whose_stop_failed_on_the_agent_is_stopped_again_while_the_agent_still_runs_it()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var session = await cp.CreateSessionAsync(agentId, SessionState.Terminating);
        var stop = await cp.EnqueueAsync(agentId, session, CommandTypes.SessionStop);
        SessionInventoryItem[] inventory = [new SessionInventoryItem { SessionId = session, State = ObservedStates.Running }];
        var first = await cp.OnlineAgentAsync(agentId, token, inventory);
        (await first.ExpectCommandAsync()).CommandId.ShouldBe(stop);
        await first.AckAsync(stop);
        // The agent restarted while it stopped the session: the stored answer of that command is a failure.
        await first.ResultAsync(stop, success: false, error: "the agent restarted while the command ran");
        await first.ExpectNothingAsync(TimeSpan.FromSeconds(0.5));
        (await cp.SessionRowAsync(session)).State.ShouldBe(SessionState.Terminating, "a failed stop does not end the session");
        await first.CloseAsync();
        await first.DisposeAsync();
        await cp.AgentStatusIsAsync(agentId, Agents.AgentStatus.Offline, Soon);

        // Back, still running it: the control plane still wants it gone, so it asks again (a new command, not the failed one).
        await using var second = await cp.OnlineAgentAsync(agentId, token, inventory);
        var again = await second.ExpectCommandAsync();
        again.Type.ShouldBe(CommandTypes.SessionStop);
        again.SessionId.ShouldBe(session);
        again.CommandId.ShouldNotBe(stop);
        await second.AckAsync(again.CommandId);
        await second.ResultAsync(again.CommandId, success: true);
        await cp.SessionStateIsAsync(session, SessionState.Terminated, Soon);
    }

    [Fact]
    public async Task A_start_that_succeeded_but_vanished_from_the_agent_is_lost()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var first = await cp.OnlineAgentAsync(agentId, token);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        (await first.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await first.AckAsync(commandId);
        await first.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        first.Crash();
        await first.DisposeAsync();

        // The agent restarted and lost the session: its inventory is empty.
        await using var second = await cp.OnlineAgentAsync(agentId, token);
        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        var row = await cp.SessionRowAsync(sessionId);
        row.State.ShouldBe(SessionState.Failed);
        row.Reason!.ShouldContain("lost on agent");
    }

    [Fact]
    public async Task Sessions_that_ended_while_the_agent_was_away_end_truthfully_at_hello()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var exited = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var failedApp = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var chatty = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var crashed = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var killed = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var killedHibernated = await cp.CreateSessionAsync(agentId, SessionState.Hibernated);
        await using var agent = await cp.OnlineAgentAsync(agentId, token,
        [
            new SessionInventoryItem { SessionId = exited, State = ObservedStates.Exited, Reason = "app exited with code 0" },
            new SessionInventoryItem { SessionId = failedApp, State = ObservedStates.Exited, Reason = "app exited with code 127" },
            new SessionInventoryItem { SessionId = chatty, State = ObservedStates.Exited, Reason = "app exited with code 2 and said hello" },
            // An older agent's item: no reason.
            new SessionInventoryItem { SessionId = crashed, State = ObservedStates.Crashed },
            new SessionInventoryItem { SessionId = killed, State = ObservedStates.Crashed, Reason = "app killed by signal 15" },
            new SessionInventoryItem { SessionId = killedHibernated, State = ObservedStates.Crashed, Reason = "Xvnc is gone: killed by signal 9\0" },
        ]);
        await cp.SessionStateIsAsync(exited, SessionState.Terminated, Soon);
        (await cp.SessionRowAsync(exited)).Reason.ShouldBe("app exited", "an app that exited by itself ended normally, whatever it said");
        await cp.SessionStateIsAsync(failedApp, SessionState.Terminated, Soon);
        (await cp.SessionRowAsync(failedApp)).Reason.ShouldBe("app exited with code 127", "an exit code other than 0 is what tells a user the app failed");
        await cp.SessionStateIsAsync(chatty, SessionState.Terminated, Soon);
        (await cp.SessionRowAsync(chatty)).Reason.ShouldBe("app exited", "only the code is kept, not other text");
        await cp.SessionStateIsAsync(crashed, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(crashed)).Reason.ShouldBe("crashed: reported at reconnect");
        await cp.SessionStateIsAsync(killed, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(killed)).Reason.ShouldBe("crashed: app killed by signal 15");
        await cp.SessionStateIsAsync(killedHibernated, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(killedHibernated)).Reason.ShouldBe("crashed: Xvnc is gone: killed by signal 9\uFFFD", "kept like a status's reason");
    }

    [Fact]
    public async Task Periodic_reconciliation_uses_the_tracked_inventory_of_a_connected_agent()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var started = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var startCommand = await cp.EnqueueAsync(agentId, started, CommandTypes.SessionStart);
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(startCommand);
        await agent.AckAsync(startCommand);
        await agent.ResultAsync(startCommand, success: true);
        await cp.SessionStateIsAsync(started, SessionState.Running, Soon);

        // A session the database believes runs on this agent although the agent never started it.
        var phantom = await cp.CreateSessionAsync(agentId, SessionState.Running);
        await cp.SessionStateIsAsync(phantom, SessionState.Failed, TimeSpan.FromSeconds(6));
        (await cp.SessionRowAsync(phantom)).Reason!.ShouldContain("lost on agent");
        // The session it did start (known from its result, not from hello) is left alone through several passes.
        (await cp.SessionRowAsync(started)).State.ShouldBe(SessionState.Running);
        await Task.Delay(TimeSpan.FromSeconds(2.5), TestContext.Current.CancellationToken);
        (await cp.SessionRowAsync(started)).State.ShouldBe(SessionState.Running);
    }

    [Fact]
    public async Task A_connection_that_no_longer_owns_the_agent_row_reconciles_nothing()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var running = await cp.CreateSessionAsync(agentId, SessionState.Running);
        await using var current = await cp.OnlineAgentAsync(agentId, token,
            [new SessionInventoryItem { SessionId = running, State = ObservedStates.Running }]);

        // An older connection of the same agent (replaced, not yet closed) with an outdated inventory: without the
        // session it runs now, with one it has stopped since.
        var gone = "ghost-xterm-" + Guid.NewGuid().ToString("N")[..6];
        using var socket = WebSocket.CreateFromStream(Stream.Null, new WebSocketCreationOptions());
        using var stale = new AgentConnection(agentId, AgentTokens.Hash(token), socket, TestContext.Current.CancellationToken);
        stale.Inventory[gone] = ObservedStates.Running;
        var reconciler = cp.App.Services.GetRequiredService<AgentReconciler>();
        (await reconciler.ReconcileAsync(stale, TestContext.Current.CancellationToken)).ShouldBe(default(ReconcileSummary));

        (await cp.SessionRowAsync(running)).State.ShouldBe(SessionState.Running);
        (await cp.CommandsForSessionAsync(gone)).ShouldBeEmpty();
        (await cp.CommandsForSessionAsync(running)).ShouldBeEmpty();
    }

    /// <summary>Another agent's session, stopping there, and the agent that owns it, online and reporting it.</summary>
    private async Task<(ScriptedAgent Owner, string Stopping, string Running)> OwnerWithSessionsAsync()
    {
        var (ownerId, ownerToken) = await cp.CreateAgentAsync("owner");
        var stopping = await cp.CreateSessionAsync(ownerId, SessionState.Terminating);
        var running = await cp.CreateSessionAsync(ownerId, SessionState.Running);
        var owner = await cp.OnlineAgentAsync(ownerId, ownerToken,
        [
            new SessionInventoryItem { SessionId = stopping, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = running, State = ObservedStates.Running },
        ]);
        return (owner, stopping, running);
    }

    [Fact]
    public async Task Session_status_about_another_agents_session_is_ignored_and_not_tracked()
    {
        var (owner, stopping, running) = await OwnerWithSessionsAsync();
        await using var _ = owner;
        var (otherId, otherToken) = await cp.CreateAgentAsync("other");
        await using var other = await cp.OnlineAgentAsync(otherId, otherToken);

        await other.StatusAsync(stopping, ObservedStates.Stopped);
        await other.StatusAsync(running, ObservedStates.Exited);
        await other.StatusAsync(stopping, ObservedStates.Running);
        await other.StatusAsync(running, ObservedStates.Running);

        // Over two reconciliation passes: its reports are not its inventory, so nothing is sent to it for them.
        await other.ExpectNothingAsync(TimeSpan.FromSeconds(4.5));
        (await cp.SessionRowAsync(stopping)).State.ShouldBe(SessionState.Terminating);
        (await cp.SessionRowAsync(running)).State.ShouldBe(SessionState.Running);
    }

    [Fact]
    public async Task A_stop_result_for_another_agents_session_finishes_the_command_but_not_the_session()
    {
        var (owner, stopping, _) = await OwnerWithSessionsAsync();
        await using var __ = owner;
        var (otherId, otherToken) = await cp.CreateAgentAsync("other");
        // The other agent claims to run the session too: reconciliation tells it to stop its copy (an orphan there).
        await using var other = await cp.OnlineAgentAsync(otherId, otherToken,
            [new SessionInventoryItem { SessionId = stopping, State = ObservedStates.Running }]);
        var stop = await other.ExpectCommandAsync();
        stop.Type.ShouldBe(CommandTypes.SessionStop);
        stop.SessionId.ShouldBe(stopping);
        await other.AckAsync(stop.CommandId);
        await other.ResultAsync(stop.CommandId, success: true);

        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(stop.CommandId)).State == CommandState.Succeeded,
            Soon, "the other agent's stop of its own copy succeeded");
        (await cp.SessionRowAsync(stopping)).State.ShouldBe(SessionState.Terminating, "only the agent it is placed on can end it");
    }

    [Fact]
    public async Task An_expired_stop_sent_to_another_agent_does_not_end_the_session()
    {
        var (owner, stopping, _) = await OwnerWithSessionsAsync();
        await using var __ = owner;
        var (otherId, otherToken) = await cp.CreateAgentAsync("other");
        await using var other = await cp.OnlineAgentAsync(otherId, otherToken);
        // An orphan stop as reconciliation writes it for the other agent, which never answers it.
        var stop = await cp.EnqueueAsync(otherId, stopping, CommandTypes.SessionStop, ttl: TimeSpan.FromSeconds(1));
        (await other.ExpectCommandAsync()).CommandId.ShouldBe(stop);

        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(stop)).State == CommandState.Expired,
            Soon, "the unanswered stop expired");
        (await cp.SessionRowAsync(stopping)).State.ShouldBe(SessionState.Terminating, "only the agent it is placed on can end it");
    }

    [Fact]
    public async Task Session_status_events_drive_the_session()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var becomesReady = await cp.CreateSessionAsync(agentId, SessionState.Starting);
        var exits = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var crashes = await cp.CreateSessionAsync(agentId, SessionState.Running);
        var hibernates = await cp.CreateSessionAsync(agentId, SessionState.Hibernating);
        await cp.EnqueueAsync(agentId, hibernates, CommandTypes.SessionHibernate); // what a hibernating session waits for
        var (otherAgentId, _) = await cp.CreateAgentAsync("other");
        var foreign = await cp.CreateSessionAsync(otherAgentId, SessionState.Running);
        await using var agent = await cp.OnlineAgentAsync(agentId, token,
        [
            new SessionInventoryItem { SessionId = becomesReady, State = ObservedStates.Starting },
            new SessionInventoryItem { SessionId = exits, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = crashes, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = hibernates, State = ObservedStates.Running },
        ]);

        await agent.StatusAsync(becomesReady, ObservedStates.Running);
        await agent.StatusAsync(exits, ObservedStates.Exited);
        await agent.StatusAsync(crashes, ObservedStates.Crashed, "Xvnc killed by signal 9");
        await agent.StatusAsync(hibernates, ObservedStates.Hibernated);
        await agent.StatusAsync(foreign, ObservedStates.Crashed, "not mine");

        await cp.SessionStateIsAsync(becomesReady, SessionState.Running, Soon);
        await cp.SessionStateIsAsync(exits, SessionState.Terminated, Soon);
        (await cp.SessionRowAsync(exits)).Reason.ShouldBe("app exited");
        await cp.SessionStateIsAsync(crashes, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(crashes)).Reason.ShouldBe("crashed: Xvnc killed by signal 9");
        await cp.SessionStateIsAsync(hibernates, SessionState.Hibernated, Soon);
        (await cp.SessionRowAsync(foreign)).State.ShouldBe(SessionState.Running, "an agent cannot change another agent's session");
    }

    [Fact]
    public async Task An_agent_reporting_more_unknown_sessions_than_its_capacity_allows_is_closed_and_its_orphan_stops_stay_bounded()
    {
        var (agentId, token) = await cp.CreateAgentAsync("inventor");
        var limit = SessionObservations.TrackingLimit(10); // the agent's max_sessions
        var prefix = "ghost-xterm-" + Guid.NewGuid().ToString("N")[..6] + "-";
        await using (var agent = await cp.OnlineAgentAsync(agentId, token))
        {
            try
            {
                for (var i = 0; i < limit + 50 && agent.IsOpen; i++) await agent.StatusAsync(prefix + i, ObservedStates.Running);
            }
            catch (WebSocketException)
            {
                // Closed by the control plane while still reporting.
            }
            (await agent.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
            agent.CloseDescription.ShouldBe($"too_many_sessions: more than {limit} sessions reported, {prefix}{limit} unknown here");
        }
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, Soon);
        // Longer than a reconciliation interval: at most one stop per tracked session was written, never one per report.
        await Task.Delay(TimeSpan.FromSeconds(2.5), TestContext.Current.CancellationToken);
        (await StopsAsync(agentId)).ShouldBeLessThanOrEqualTo(limit);

        // A hello with more sessions than that is what the agent runs (say, after an admin lowered its capacity): welcomed,
        // never locked out; only more unknown sessions reported after it would close the connection.
        await using var again = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
        var inventory = Enumerable.Range(0, limit + 1).Select(i => new SessionInventoryItem { SessionId = prefix + i, State = ObservedStates.Running }).ToList();
        (await again.HelloAsync(inventory)).ShouldNotBeNull(again.Refusal?.Reason);
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Online, Soon);
        await again.StatusAsync(prefix + "one-more", ObservedStates.Running);
        await Task.Delay(TimeSpan.FromSeconds(2.5), TestContext.Current.CancellationToken);
        again.IsOpen.ShouldBeTrue("one more unknown session is within the hello's inventory plus 100");
        (await StopsAsync(agentId)).ShouldBeLessThanOrEqualTo(limit + 2);
    }

    private async Task<long> StopsAsync(string agentId)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn,
            "SELECT COUNT(*) FROM agent_commands WHERE agent_id = @agentId AND type = @stop", new { agentId, stop = CommandTypes.SessionStop });
    }
}

[Trait("Category", "Timing")]
public sealed class ReconciliationTests_Sqlite(HubSqliteControlPlane cp) : ReconciliationTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class ReconciliationTests_Postgres(HubPostgresControlPlane cp) : ReconciliationTests(cp), IClassFixture<HubPostgresControlPlane>;
