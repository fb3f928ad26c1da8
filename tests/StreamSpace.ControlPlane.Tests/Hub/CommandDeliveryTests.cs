using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>Durable command delivery (invariant 2) and results driving session state (invariant 3).</summary>
public abstract class CommandDeliveryTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task A_start_command_is_delivered_once_and_its_ack_and_result_move_the_session_to_running()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart, new { sessionId, template = "xterm" });

        var command = await agent.ExpectCommandAsync();
        command.CommandId.ShouldBe(commandId);
        command.Type.ShouldBe(CommandTypes.SessionStart);
        command.SessionId.ShouldBe(sessionId);
        command.Args.GetProperty("template").GetString().ShouldBe("xterm");
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Sent);

        await agent.AckAsync(commandId);
        await cp.SessionStateIsAsync(sessionId, SessionState.Starting, Soon);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Acked);

        await agent.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        var row = await cp.CommandRowAsync(commandId);
        row.State.ShouldBe(CommandState.Succeeded);
        row.Attempts.ShouldBe(1);

        // Longer than the ack timeout and a poll: still exactly one delivery.
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(2.5));
        agent.CommandsReceived.Count(c => c.CommandId == commandId).ShouldBe(1);
    }

    [Fact]
    public async Task A_deleted_users_home_delete_reaches_the_agent_without_a_session_and_its_results_finish_it()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var (otherId, otherToken) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        await using var other = await cp.OnlineAgentAsync(otherId, otherToken);
        var admin = await cp.AdminClientAsync();
        var username = ControlPlaneFixture.Unique("gone");
        var (_, userId, _) = await cp.CreateUserAsync(username);
        foreach (var (placedOn, suffix) in new[] { (agentId, "aaaaaa"), (otherId, "bbbbbb") })
            await cp.ExecuteAsync(
                """
                INSERT INTO sessions (id, user_id, username, template, state, agent_id, cpu, memory, persistent_home, created_at, updated_at)
                VALUES (@id, @userId, @username, 'xterm', 'terminated', @placedOn, '500m', '512Mi', @yes, @now, @now)
                """,
                new { id = $"{username}-xterm-{suffix}", userId, username, placedOn, yes = true, now = DateTimeOffset.UtcNow });

        (await admin.DeleteAsync($"/api/v1/users/{userId}", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        var done = await agent.ExpectCommandAsync();
        var refused = await other.ExpectCommandAsync();
        foreach (var command in new[] { done, refused })
        {
            command.Type.ShouldBe(CommandTypes.HomeDelete);
            command.SessionId.ShouldBeNull();
            command.Args.GetProperty("userId").GetString().ShouldBe(userId);
        }
        await agent.AckAsync(done.CommandId);
        await agent.ResultAsync(done.CommandId, success: true);
        await other.AckAsync(refused.CommandId);
        await other.ResultAsync(refused.CommandId, success: false, error: "the persistent home is in use");

        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(done.CommandId)).State == CommandState.Succeeded, Soon, "home.delete succeeded");
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(refused.CommandId)).State == CommandState.Failed, Soon, "home.delete failed");
        (await cp.CommandRowAsync(refused.CommandId)).Error.ShouldBe("the persistent home is in use");
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(2.5));
        agent.IsOpen.ShouldBeTrue();
        other.IsOpen.ShouldBeTrue();
    }

    [Fact]
    public async Task A_failed_start_fails_the_session_with_the_agents_reason()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await agent.AckAsync(commandId);
        await agent.ResultAsync(commandId, success: false, error: "Xvnc did not start: display :12 in use");

        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(sessionId)).Reason!.ShouldContain("Xvnc did not start");
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Failed);
    }

    [Fact]
    public async Task A_command_queued_while_the_agent_is_offline_waits_and_is_delivered_once_after_it_connects()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        await Task.Delay(TimeSpan.FromSeconds(1.5), TestContext.Current.CancellationToken);
        var waiting = await cp.CommandRowAsync(commandId);
        waiting.State.ShouldBe(CommandState.Pending, "nothing is marked failed while the agent is away");
        waiting.Attempts.ShouldBe(0);
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Pending);

        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var command = await agent.ExpectCommandAsync();
        command.CommandId.ShouldBe(commandId);
        await agent.AckAsync(commandId);
        await agent.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(2.5));
        agent.CommandsReceived.Count.ShouldBe(1);
    }

    [Fact]
    public async Task Every_delivery_tells_the_agent_when_the_command_expires()
    {
        // The agent does not start a command whose time is up (it waited in a socket or behind a slow command).
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var queued = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart, ttl: TimeSpan.FromMinutes(7));
        var queuedExpiry = (await cp.CommandRowAsync(queued)).ExpiresAt!.Value;
        queuedExpiry.ShouldBe(DateTimeOffset.UtcNow + TimeSpan.FromMinutes(7), TimeSpan.FromSeconds(30));

        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var delivered = await agent.ExpectCommandAsync(); // polled from the table when the agent connects
        delivered.CommandId.ShouldBe(queued);
        delivered.ExpiresAt!.Value.ShouldBe(queuedExpiry, TimeSpan.FromMilliseconds(1));
        var redelivered = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(4)); // no ack: sent again
        redelivered.CommandId.ShouldBe(queued);
        redelivered.ExpiresAt.ShouldBe(delivered.ExpiresAt);
        await agent.AckAsync(queued);

        var handedOff = await cp.WriteHandedOffAsync(agentId, sessionId, CommandTypes.SessionStop);
        var sent = await agent.ExpectCommandAsync(); // handed to the connection by the writer, never read back
        sent.CommandId.ShouldBe(handedOff.Id);
        sent.ExpiresAt!.Value.ShouldBe((await cp.CommandRowAsync(handedOff.Id)).ExpiresAt!.Value, TimeSpan.FromMilliseconds(1));
    }

    [Fact]
    public async Task Commands_are_delivered_in_created_order()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessions = new List<string>();
        var commands = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
            sessions.Add(sessionId);
            commands.Add(await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart));
        }
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        foreach (var expected in commands)
        {
            var command = await agent.ExpectCommandAsync();
            command.CommandId.ShouldBe(expected);
            await agent.AckAsync(command.CommandId);
        }
    }

    [Fact]
    public async Task An_unacknowledged_command_is_redelivered_with_the_same_command_id()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var before = cp.Metrics.CommandsRedelivered;
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);

        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        // No ack: after the 1 s ack timeout it comes again, same id (the agent dedupes on it).
        (await agent.ExpectCommandAsync(TimeSpan.FromSeconds(4))).CommandId.ShouldBe(commandId);
        (await cp.CommandRowAsync(commandId)).Attempts.ShouldBeGreaterThanOrEqualTo(2);
        // Counted once the send has completed on the control plane's side, which can be just after the agent has read it.
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(cp.Metrics.CommandsRedelivered > before), Soon, "the redelivery counted");

        await agent.AckAsync(commandId);
        await agent.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        // A duplicate result (e.g. re-sent after a redelivery) is ignored.
        await agent.ResultAsync(commandId, success: false, error: "late duplicate");
        await Task.Delay(500, TestContext.Current.CancellationToken);
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Running);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Succeeded);
    }

    [Fact]
    public async Task A_command_in_flight_when_the_agent_reconnects_is_sent_again_on_the_new_connection()
    {
        var (agentId, token, sessionId, commandId) = await AckedStartWhoseConnectionDiedAsync();

        await using var second = await cp.OnlineAgentAsync(agentId, token);
        (await second.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await second.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
    }

    [Fact]
    public async Task A_resend_on_reconnect_that_fails_is_tried_again_at_the_next_pass_not_after_the_result_timeout()
    {
        // The result is lost with the connection (a control plane killed after it wrote the ack, in the end-to-end tests).
        var (agentId, token, sessionId, commandId) = await AckedStartWhoseConnectionDiedAsync("resend");

        // The new connection's resend pass fails (there it was a deadlock victim): the database refuses the claim for a while.
        var trigger = $"refuse_{agentId}";
        await CreateTriggerAsync(trigger, agentId, cp.Db.IsPostgres
            ? "RAISE EXCEPTION 'refused by the test'"
            : "SELECT RAISE(ABORT, 'refused by the test')", on: "UPDATE");
        ScriptedAgent second;
        try
        {
            second = await cp.OnlineAgentAsync(agentId, token);
            await second.ExpectNothingAsync(TimeSpan.FromSeconds(1.5));
        }
        finally
        {
            await DropTriggerAsync(trigger);
        }
        await using (second)
        {
            // Well before the acked command's own deadline (CommandResultTimeout, 60 s): the resend is not lost with the pass.
            (await second.ExpectCommandAsync(TimeSpan.FromSeconds(10))).CommandId.ShouldBe(commandId);
            await second.ResultAsync(commandId, success: true);
            await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        }
    }

    [Fact]
    public async Task A_command_past_its_ttl_expires_and_fails_its_session_with_a_reason_naming_command_and_agent()
    {
        var (agentId, _) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var before = cp.Metrics.CommandsExpired;
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        await cp.ExecuteAsync("UPDATE agent_commands SET expires_at = @at WHERE id = @commandId",
            new { at = DateTimeOffset.UtcNow.AddMilliseconds(500), commandId });

        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        var session = await cp.SessionRowAsync(sessionId);
        session.Reason!.ShouldContain(commandId);
        session.Reason!.ShouldContain(agentId);
        session.Reason!.ShouldContain("expired");
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Expired);
        // Counted after the expiry's transaction commits, so just after its effects are visible.
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(cp.Metrics.CommandsExpired > before), Soon, "the expiry counted");
    }

    [Fact]
    public async Task An_expired_command_quotes_its_own_ttl_not_the_default_one()
    {
        // stream.open is written with a 30 s TTL while the default is 10 min; the reason must say which one ran out.
        var (agentId, _) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart, ttl: TimeSpan.FromSeconds(1));

        await cp.SessionStateIsAsync(sessionId, SessionState.Failed, Soon);
        var reason = (await cp.SessionRowAsync(sessionId)).Reason!;
        reason.ShouldContain($"{commandId} expired");
        reason.ShouldContain("within 00:00:01");
        reason.ShouldNotContain("00:10:00");
        var row = await cp.CommandRowAsync(commandId);
        row.State.ShouldBe(CommandState.Expired);
        row.Error.ShouldBe("not completed within 00:00:01");
    }

    [Theory]
    [InlineData(CommandTypes.SessionHibernate, SessionState.Hibernating, ObservedStates.Running, SessionState.Running)]
    [InlineData(CommandTypes.SessionHibernate, SessionState.Hibernating, ObservedStates.Hibernated, SessionState.Hibernated)]
    [InlineData(CommandTypes.SessionWake, SessionState.Waking, ObservedStates.Hibernated, SessionState.Hibernated)]
    [InlineData(CommandTypes.SessionWake, SessionState.Waking, ObservedStates.Running, SessionState.Running)]
    public async Task An_expired_hibernate_or_wake_leaves_the_session_as_the_agent_reports_it_on_its_return(
        string type, string waiting, string observed, string settled)
    {
        // The agent was unreachable past the command's TTL (the idle sweeper hibernates sessions nobody can type into).
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, waiting);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, type, ttl: TimeSpan.FromSeconds(1));
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(commandId)).State == CommandState.Expired, Soon, "the command expired");
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(waiting, "the session still exists on its agent: not failed");

        await using var agent = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = sessionId, State = observed }]);

        await cp.SessionStateIsAsync(sessionId, settled, Soon);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(1)); // above all, no stop of the user's session
    }

    [Fact]
    public async Task An_expired_stop_ends_the_session_as_terminated()
    {
        var (agentId, _) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Terminating);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStop);
        await cp.ExecuteAsync("UPDATE agent_commands SET expires_at = @at WHERE id = @commandId",
            new { at = DateTimeOffset.UtcNow.AddMilliseconds(200), commandId });
        await cp.SessionStateIsAsync(sessionId, SessionState.Terminated, Soon);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Expired);
    }

    [Theory]
    [InlineData(CommandTypes.SessionStop, SessionState.Terminating, true, SessionState.Terminated)]
    [InlineData(CommandTypes.SessionHibernate, SessionState.Hibernating, true, SessionState.Hibernated)]
    [InlineData(CommandTypes.SessionHibernate, SessionState.Hibernating, false, SessionState.Running)]
    [InlineData(CommandTypes.SessionWake, SessionState.Waking, true, SessionState.Running)]
    [InlineData(CommandTypes.SessionWake, SessionState.Waking, false, SessionState.Hibernated)]
    public async Task Results_move_the_session_through_the_state_machine(string type, string from, bool success, string to)
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, from);
        // As the sessions API does: the state change and its command are written together, before delivery.
        var commandId = await cp.EnqueueAsync(agentId, sessionId, type);
        // The agent reports the session as it really is, so reconciliation on hello leaves it alone.
        var observed = from == SessionState.Waking ? ObservedStates.Hibernated : ObservedStates.Running;
        await using var agent = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = sessionId, State = observed }]);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await agent.AckAsync(commandId);
        await agent.ResultAsync(commandId, success, success ? null : "SIGSTOP refused");
        await cp.SessionStateIsAsync(sessionId, to, Soon);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(success ? CommandState.Succeeded : CommandState.Failed);
    }

    [Fact]
    public async Task A_burst_of_reports_is_applied_completely_and_in_the_order_sent()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessions = new List<string>();
        var commands = new List<string>();
        for (var i = 0; i < 30; i++)
        {
            var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
            sessions.Add(sessionId);
            commands.Add(await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart));
        }
        // Two starts for one session: the failure is reported first, so the session must end failed (a failed
        // session stays failed); applied the other way round it would end running.
        var twice = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var first = await cp.EnqueueAsync(agentId, twice, CommandTypes.SessionStart);
        var second = await cp.EnqueueAsync(agentId, twice, CommandTypes.SessionStart);
        for (var i = 0; i < 32; i++) await agent.ExpectCommandAsync();

        // Everything back-to-back, without waiting: the hub applies these reports in batches.
        foreach (var commandId in commands)
        {
            await agent.AckAsync(commandId);
            await agent.ResultAsync(commandId, success: true);
        }
        await agent.AckAsync(first);
        await agent.AckAsync(second);
        await agent.ResultAsync(first, success: false, error: "first start failed");
        await agent.ResultAsync(second, success: true);

        foreach (var sessionId in sessions) await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        foreach (var commandId in commands) (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Succeeded);
        await cp.SessionStateIsAsync(twice, SessionState.Failed, Soon);
        (await cp.SessionRowAsync(twice)).Reason!.ShouldContain("first start failed");
        (await cp.CommandRowAsync(first)).State.ShouldBe(CommandState.Failed);
        (await cp.CommandRowAsync(second)).State.ShouldBe(CommandState.Succeeded);
    }

    [Fact]
    public async Task A_command_for_a_connected_agent_is_written_claimed_and_handed_to_its_connection_once()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var written = await cp.WriteHandedOffAsync(agentId, sessionId, CommandTypes.SessionStart);
        written.State.ShouldBe(CommandState.Sent, "claimed in the writing transaction: no delivery pass queries it again");
        written.Attempts.ShouldBe(1);

        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(written.Id);
        await agent.AckAsync(written.Id);
        await agent.ResultAsync(written.Id, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        var row = await cp.CommandRowAsync(written.Id);
        row.State.ShouldBe(CommandState.Succeeded);
        row.Attempts.ShouldBe(1);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(2.5));
        agent.CommandsReceived.Count(c => c.CommandId == written.Id).ShouldBe(1);
    }

    [Fact]
    public async Task A_command_handed_off_right_after_hello_is_claimed_once_though_the_hello_pass_may_read_it_first()
    {
        // The hello queues a pass that re-sends what an earlier connection left in flight; a command written claimed for
        // the new connection a moment later can be committed before that pass reads the table. It must not claim it again.
        for (var i = 0; i < 15; i++)
        {
            var (agentId, token) = await cp.CreateAgentAsync();
            var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
            await using var agent = await cp.OnlineAgentAsync(agentId, token);
            var written = await cp.WriteHandedOffAsync(agentId, sessionId, CommandTypes.SessionStart);
            (await agent.ExpectCommandAsync()).CommandId.ShouldBe(written.Id);
            await agent.ExpectNothingAsync(TimeSpan.FromSeconds(0.2));
            (await cp.CommandRowAsync(written.Id)).Attempts.ShouldBe(1, $"round {i}: claimed by the hand-off only");
            agent.CommandsReceived.Count(c => c.CommandId == written.Id).ShouldBe(1);
        }
    }

    [Fact]
    public async Task A_command_for_an_agent_not_connected_here_is_written_pending_and_delivered_when_it_connects()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var written = await cp.WriteHandedOffAsync(agentId, sessionId, CommandTypes.SessionStart);
        written.State.ShouldBe(CommandState.Pending);
        written.Attempts.ShouldBe(0);

        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(written.Id);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(0.5));
        agent.CommandsReceived.Count.ShouldBe(1);
    }

    [Fact]
    public async Task A_handed_off_command_never_sent_before_its_connection_died_is_sent_once_on_the_next_connection()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var first = await cp.OnlineAgentAsync(agentId, token);
        // Delivery handles requests in order: once a command queued now has arrived, the pass that re-sends what was in
        // flight when this connection said hello is over (it would otherwise send the command below on this connection).
        var other = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var otherCommand = await cp.EnqueueAsync(agentId, other, CommandTypes.SessionStart);
        (await first.ExpectCommandAsync()).CommandId.ShouldBe(otherCommand);
        await first.ResultAsync(otherCommand, success: true);
        await cp.SessionStateIsAsync(other, SessionState.Running, Soon);
        // Committed as claimed, but the hand-off never happens: the control plane died or the socket broke in between.
        var written = await cp.WriteHandedOffAsync(agentId, sessionId, CommandTypes.SessionStart, notify: false);
        written.State.ShouldBe(CommandState.Sent);
        await first.ExpectNothingAsync(TimeSpan.FromSeconds(0.3));
        first.Crash();
        await first.DisposeAsync();

        await using var second = await cp.OnlineAgentAsync(agentId, token);
        (await second.ExpectCommandAsync()).CommandId.ShouldBe(written.Id);
        await second.AckAsync(written.Id);
        await second.ResultAsync(written.Id, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
        await second.ExpectNothingAsync(TimeSpan.FromSeconds(0.5));
        second.CommandsReceived.Count(c => c.CommandId == written.Id).ShouldBe(1);
    }

    [Fact]
    public async Task Reports_from_several_agents_at_once_each_move_only_their_own_sessions()
    {
        var agents = new List<(ScriptedAgent Agent, string SessionId, string CommandId, bool Success)>();
        for (var i = 0; i < 4; i++)
        {
            var (agentId, token) = await cp.CreateAgentAsync();
            var agent = await cp.OnlineAgentAsync(agentId, token);
            var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
            var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
            (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
            agents.Add((agent, sessionId, commandId, Success: i % 2 == 0));
        }
        try
        {
            // All at once, so their reports share the hub's transactions; odd agents report a failure.
            await Task.WhenAll(agents.Select(async a =>
            {
                await a.Agent.AckAsync(a.CommandId);
                await a.Agent.ResultAsync(a.CommandId, a.Success, a.Success ? null : $"no display on {a.SessionId}");
            }));
            foreach (var a in agents)
            {
                await cp.SessionStateIsAsync(a.SessionId, a.Success ? SessionState.Running : SessionState.Failed, Soon);
                if (!a.Success) (await cp.SessionRowAsync(a.SessionId)).Reason!.ShouldContain($"no display on {a.SessionId}");
                (await cp.CommandRowAsync(a.CommandId)).State.ShouldBe(a.Success ? CommandState.Succeeded : CommandState.Failed);
            }
        }
        finally
        {
            foreach (var a in agents) await a.Agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_result_for_an_unknown_command_is_ignored_and_the_agent_keeps_working()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        await agent.ResultAsync(Guid.NewGuid().ToString("N"), success: true);
        await agent.AckAsync(Guid.NewGuid().ToString("N"));
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        agent.IsOpen.ShouldBeTrue();
    }

    [Fact]
    public async Task A_command_for_another_agent_cannot_be_completed_by_this_one()
    {
        var (ownerId, _) = await cp.CreateAgentAsync("owner");
        var (intruderId, intruderToken) = await cp.CreateAgentAsync("intruder");
        var sessionId = await cp.CreateSessionAsync(ownerId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(ownerId, sessionId, CommandTypes.SessionStart);
        await using var intruder = await cp.OnlineAgentAsync(intruderId, intruderToken);
        await intruder.AckAsync(commandId);
        await intruder.ResultAsync(commandId, success: true);
        await Task.Delay(500, TestContext.Current.CancellationToken);
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Pending);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(CommandState.Pending);
    }

    [Fact]
    public async Task A_connection_forgets_the_commands_it_carried_once_they_are_final_and_still_delivers_each_once()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var connection = cp.App.Services.GetRequiredService<Agents.Hub.AgentConnectionRegistry>().Find(agentId)!;
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Running);

        // Viewers opening streams, one command each, over a connection that lives for weeks.
        var opened = new List<string>();
        for (var i = 0; i < 20; i++) opened.Add(await cp.EnqueueAsync(agentId, sessionId, CommandTypes.StreamOpen, new { sessionId, streamId = $"s{i}" }));
        var received = new List<CommandPayload>();
        for (var i = 0; i < opened.Count; i++) received.Add(await agent.ExpectCommandAsync());
        received.Select(c => c.CommandId).ShouldBe(opened, ignoreOrder: true);
        connection.DeliveredCount.ShouldBe(opened.Count);
        foreach (var id in opened)
        {
            await agent.AckAsync(id);
            await agent.ResultAsync(id, success: true);
        }
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(connection.DeliveredCount == 0), Soon, "finished commands are forgotten");

        // One the agent never answers is redelivered after its ack timeout, and forgotten once it expires.
        var unanswered = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.StreamOpen, new { sessionId, streamId = "late" }, ttl: TimeSpan.FromSeconds(2.5));
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(unanswered);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(unanswered, "redelivered after the ack timeout");
        connection.DeliveredCount.ShouldBe(1);
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(unanswered)).State == CommandState.Expired, Soon, "the command expires");
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(connection.DeliveredCount == 0), Soon, "an expired command is forgotten");

        // Nothing finished is sent again (the expired one may have gone out once more before it expired).
        while (await agent.NextAsync(TimeSpan.FromMilliseconds(300)) is { } late) late.PayloadAs<CommandPayload>().CommandId.ShouldBe(unanswered);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(2.5));
        agent.CommandsReceived.Count(c => opened.Contains(c.CommandId)).ShouldBe(opened.Count);
    }

    [Fact]
    public async Task A_create_that_does_not_commit_leaves_none_of_its_command_ids_reserved_on_the_agents_connection()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("handoff");
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        var connection = cp.App.Services.GetRequiredService<Agents.Hub.AgentConnectionRegistry>().Find(agentId)!;
        await cp.ExecuteAsync("UPDATE agents SET draining = @yes WHERE agent_id <> @agentId", new { yes = true, agentId });
        var (client, _, _) = await cp.QuickUserAsync("handoff");
        connection.DeliveredCount.ShouldBe(0);

        // The start command's id is reserved on the connection before its row is written; the database then refuses the
        // row, so the batch fails and nothing commits. Its id can never be sent, taken or finished: it must not stay.
        var trigger = $"refuse_{agentId}";
        await CreateTriggerAsync(trigger, agentId, cp.Db.IsPostgres
            ? "RAISE EXCEPTION 'refused by the test'"
            : "SELECT RAISE(ABORT, 'refused by the test')");
        try
        {
            using var refused = await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, ct);
            await refused.ShouldBeErrorAsync(HttpStatusCode.InternalServerError);
        }
        finally
        {
            await DropTriggerAsync(trigger);
        }
        connection.DeliveredCount.ShouldBe(0, "the failed batch's reservation was given back");

        if (cp.Db.IsPostgres)
        {
            // Attempts that are run again (SQLite has no counter outside a transaction to refuse only the first ones): a
            // deadlock victim (Db.InTransactionAsync), then a session-id collision (the create batch draws new ids).
            await cp.ExecuteAsync($"CREATE SEQUENCE {trigger}_count", new { });
            await CreateTriggerAsync(trigger, agentId,
                $"""
                CASE nextval('{trigger}_count')
                    WHEN 1 THEN RAISE EXCEPTION 'deadlock made by the test' USING ERRCODE = '40P01';
                    WHEN 2 THEN RAISE EXCEPTION 'duplicate key made by the test' USING ERRCODE = '23505', CONSTRAINT = 'PK_sessions';
                    ELSE NULL;
                END CASE
                """);
            try
            {
                using var created = await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, ct);
                var sessionId = (await created.ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("id").GetString()!;
                (await cp.ScalarAsync<long>($"SELECT last_value FROM {trigger}_count")).ShouldBe(3, "the create was run three times");
                var start = await agent.ExpectCommandAsync();
                start.SessionId.ShouldBe(sessionId);
                connection.DeliveredCount.ShouldBe(1, "only the committed start command is carried here");
                await agent.AckAsync(start.CommandId);
                await agent.ResultAsync(start.CommandId, success: true);
                await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
                await HubControlPlane.EventuallyAsync(() => Task.FromResult(connection.DeliveredCount == 0), Soon, "the finished command is forgotten");
                await agent.ExpectNothingAsync(TimeSpan.FromSeconds(0.5));
            }
            finally
            {
                await DropTriggerAsync(trigger);
                await cp.ExecuteAsync($"DROP SEQUENCE {trigger}_count", new { });
            }
        }
    }

    /// <summary>A start command delivered and acked on a connection that then died without a trace (its result never sent).</summary>
    private async Task<(string AgentId, string Token, string SessionId, string CommandId)> AckedStartWhoseConnectionDiedAsync(string prefix = "agent")
    {
        var (agentId, token) = await cp.CreateAgentAsync(prefix);
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Pending);
        var first = await cp.OnlineAgentAsync(agentId, token);
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        (await first.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await first.AckAsync(commandId);
        await cp.SessionStateIsAsync(sessionId, SessionState.Starting, Soon);
        first.Crash();
        await first.DisposeAsync();
        return (agentId, token, sessionId, commandId);
    }

    /// <summary>A trigger that runs <paramref name="body"/> before each command row for <paramref name="agentId"/> is inserted
    /// (or, with <paramref name="on"/> UPDATE, changed).</summary>
    private Task CreateTriggerAsync(string name, string agentId, string body, string on = "INSERT") => cp.Db.IsPostgres
        ? cp.ExecuteAsync(
            $"""
            CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {body};
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE {on} ON agent_commands FOR EACH ROW WHEN (NEW.agent_id = '{agentId}') EXECUTE FUNCTION {name}();
            """, new { })
        : cp.ExecuteAsync($"CREATE TRIGGER {name} BEFORE {on} ON agent_commands WHEN NEW.agent_id = '{agentId}' BEGIN {body}; END", new { });

    private Task DropTriggerAsync(string name) => cp.ExecuteAsync(
        cp.Db.IsPostgres ? $"DROP TRIGGER {name} ON agent_commands; DROP FUNCTION {name}()" : $"DROP TRIGGER {name}", new { });
}

[Trait("Category", "Timing")]
public sealed class CommandDeliveryTests_Sqlite(HubSqliteControlPlane cp) : CommandDeliveryTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class CommandDeliveryTests_Postgres(HubPostgresControlPlane cp) : CommandDeliveryTests(cp), IClassFixture<HubPostgresControlPlane>;
