using System.Net;
using System.Net.Http.Json;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Idle handling: running sessions without input for <see cref="StreamSpaceOptions.IdleTimeout"/> are hibernated (or
/// terminated), through the same state change, outbox command and audit entry as a user's own request. The fixture
/// app runs with idle handling off; each test runs a sweeper of its own over the fixture's database.
/// </summary>
public abstract class IdleSessionTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly TimeSpan Timeout = TimeSpan.FromHours(1);

    [Fact]
    public async Task Only_running_sessions_without_input_or_a_state_change_for_the_timeout_are_hibernated_once()
    {
        var agentId = ControlPlaneFixture.Unique("idle");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idle", maxSessions: 10);
        var now = DateTimeOffset.UtcNow;
        var neverViewed = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: null);
        var inputLongAgo = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-5), input: now.AddHours(-3));
        var recentInput = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: now.AddMinutes(-10));
        var justWoken = await SessionAsync(agentId, userId, username, "running", changed: now.AddMinutes(-5), input: now.AddHours(-3));
        var hibernated = await SessionAsync(agentId, userId, username, "hibernated", changed: now.AddHours(-4), input: null);
        var pending = await SessionAsync(agentId, userId, username, "pending", changed: now.AddHours(-4), input: null);

        var handled = await Sweeper(StreamSpaceOptions.IdleHibernate).SweepAsync(Ct);

        handled.ShouldBe([inputLongAgo, neverViewed], ignoreOrder: true);
        foreach (var id in handled)
        {
            var (state, reason) = await StateAsync(id);
            state.ShouldBe(SessionState.Hibernating);
            reason.ShouldStartWith("idle: no input for 01:00:00");
            (await CommandsAsync(id)).ShouldBe([(CommandTypes.SessionHibernate, CommandState.Pending)]);
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = @action AND target = @id AND actor = 'system' AND subject_user = @username",
                new { action = AuditActions.SessionIdle, id, username })).ShouldBe(1);
        }
        foreach (var id in new[] { recentInput, justWoken, hibernated, pending })
        {
            (await CommandsAsync(id)).ShouldBeEmpty(id);
        }
        (await StateAsync(recentInput)).State.ShouldBe(SessionState.Running);
        (await StateAsync(hibernated)).State.ShouldBe(SessionState.Hibernated);

        // Handled once: the next check finds nothing more to do.
        (await Sweeper(StreamSpaceOptions.IdleHibernate).SweepAsync(Ct)).ShouldBeEmpty();
    }

    [Fact]
    public async Task With_the_terminate_action_an_idle_session_is_stopped()
    {
        var agentId = ControlPlaneFixture.Unique("idlestop");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idlestop");
        var idle = await SessionAsync(agentId, userId, username, "running", changed: DateTimeOffset.UtcNow.AddHours(-2), input: null);

        (await Sweeper(StreamSpaceOptions.IdleTerminate).SweepAsync(Ct)).ShouldBe([idle]);

        (await StateAsync(idle)).State.ShouldBe(SessionState.Terminating);
        (await CommandsAsync(idle)).ShouldBe([(CommandTypes.SessionStop, CommandState.Pending)]);
    }

    /// <summary>The agent's result carries no reason of its own: the session keeps the idle sweeper's.</summary>
    [Theory]
    [InlineData(StreamSpaceOptions.IdleHibernate, CommandTypes.SessionHibernate, SessionState.Hibernated)]
    [InlineData(StreamSpaceOptions.IdleTerminate, CommandTypes.SessionStop, SessionState.Terminated)]
    public async Task An_idle_session_keeps_its_idle_reason_once_its_agent_carried_out_the_idle_action(string action, string command, string endState)
    {
        var (agentId, token) = await cp.RegisterAgentAsync("idleact");
        var (_, userId, username) = await cp.QuickUserAsync("idleact");
        var idle = await SessionAsync(agentId, userId, username, "running", changed: DateTimeOffset.UtcNow.AddHours(-2), input: null);
        await using var agent = await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token,
            [new SessionInventoryItem { SessionId = idle, State = ObservedStates.Running }], heartbeat: false);
        // Connected for longer than the timeout: a viewer could have had the time.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync("UPDATE agents SET connected_at = @since WHERE agent_id = @agentId", new { since = DateTimeOffset.UtcNow.AddHours(-3), agentId });

        (await Sweeper(action).SweepAsync(Ct)).ShouldBe([idle]);
        var reason = (await StateAsync(idle)).Reason.ShouldNotBeNull();
        reason.ShouldStartWith("idle: no input for 01:00:00");

        // Only the command's result, no status event first: the result moves the session itself.
        var sent = await agent.ExpectCommandAsync();
        sent.Type.ShouldBe(command);
        await agent.AckAsync(sent.CommandId);
        await agent.ResultAsync(sent.CommandId, success: true);
        await HubControlPlane.EventuallyAsync(async () => (await StateAsync(idle)).State == endState, TimeSpan.FromSeconds(10),
            $"session {idle} {endState} by the {command} result");
        (await StateAsync(idle)).Reason.ShouldBe(reason);
    }

    [Fact]
    public async Task The_running_service_checks_at_its_interval_and_catches_a_session_once_its_timeout_passes()
    {
        var agentId = ControlPlaneFixture.Unique("idleloop");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idleloop");
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var id = await SessionAsync(agentId, userId, username, "running", changed: clock.GetUtcNow().AddMinutes(-50), input: null);
        var sweeper = Sweeper(StreamSpaceOptions.IdleHibernate, clock);
        await sweeper.StartAsync(Ct);
        try
        {
            clock.Advance(TimeSpan.FromMinutes(1)); // a check: idle for 51 minutes, not yet
            await Task.Delay(300, Ct);
            (await StateAsync(id)).State.ShouldBe(SessionState.Running);

            clock.Advance(TimeSpan.FromMinutes(10)); // the next check: idle for 61 minutes
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while ((await StateAsync(id)).State == SessionState.Running && DateTime.UtcNow < deadline) await Task.Delay(50, Ct);
            (await StateAsync(id)).State.ShouldBe(SessionState.Hibernating);
        }
        finally
        {
            await sweeper.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_template_can_set_its_own_idle_timeout_or_never_idle_out()
    {
        var agentId = ControlPlaneFixture.Unique("idletpl");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idletpl", maxSessions: 10);
        var quick = await TemplateAsync("idle-quick-", idleTimeoutMinutes: 30);
        var never = await TemplateAsync("idle-never-", idleTimeoutMinutes: 0);
        var now = DateTimeOffset.UtcNow;
        var quickIdle = await SessionAsync(agentId, userId, username, "running", changed: now.AddMinutes(-40), input: null, template: quick);
        var quickActive = await SessionAsync(agentId, userId, username, "running", changed: now.AddMinutes(-40), input: now.AddMinutes(-20), template: quick);
        var neverIdle = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-5), input: null, template: never);
        var xtermAfter40 = await SessionAsync(agentId, userId, username, "running", changed: now.AddMinutes(-40), input: null);
        var xtermAfter2h = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: null);

        // Global timeout 1 h: the quick template's own 30 min apply to its sessions, the others keep the hour.
        var handled = await Sweeper(StreamSpaceOptions.IdleHibernate).SweepAsync(Ct);
        handled.ShouldContain(quickIdle);
        handled.ShouldContain(xtermAfter2h);
        foreach (var id in new[] { quickActive, neverIdle, xtermAfter40 }) handled.ShouldNotContain(id);
        (await StateAsync(quickIdle)).Reason.ShouldNotBeNull().ShouldStartWith("idle: no input for 00:30:00");

        // Global idle handling off: a template's own timeout still applies.
        var quickIdle2 = await SessionAsync(agentId, userId, username, "running", changed: now.AddMinutes(-40), input: null, template: quick);
        var xtermAfter3h = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-3), input: null);
        var off = await Sweeper(StreamSpaceOptions.IdleHibernate, timeout: TimeSpan.Zero).SweepAsync(Ct);
        off.ShouldContain(quickIdle2);
        off.ShouldNotContain(xtermAfter3h);
        off.ShouldNotContain(neverIdle);
        // Back on: the hour applies to the xterm session again (and nothing idle is left for the other tests).
        (await Sweeper(StreamSpaceOptions.IdleHibernate).SweepAsync(Ct)).ShouldBe([xtermAfter3h]);
    }

    private async Task<string> TemplateAsync(string prefix, int idleTimeoutMinutes)
    {
        var name = ControlPlaneFixture.Unique(prefix);
        var template = new Templates.TemplateDefinition
        {
            Name = name, DisplayName = name, DefaultResources = new() { Cpu = "250m", Memory = "256Mi" }, Stream = new() { Protocol = "vnc" },
            Process = new() { Command = "xterm" }, IdleTimeoutMinutes = idleTimeoutMinutes,
        };
        template.Validate().IsValid.ShouldBeTrue();
        await using var conn = await cp.Db.OpenAsync(Ct);
        (await cp.App.Services.GetRequiredService<Templates.TemplateCatalog>().InsertAsync(conn, null, template.Normalize(), builtin: false, Ct)).ShouldBeTrue();
        return name;
    }

    [Fact]
    public async Task Idle_time_counts_only_while_the_agent_is_online_and_from_its_last_hello()
    {
        var (_, userId, username) = await cp.QuickUserAsync("idleagent", maxSessions: 10);
        var now = DateTimeOffset.UtcNow;
        // Each agent runs a session nobody touched for two hours; only the agent that has been back for three hours
        // could have had a viewer all that time.
        async Task<string> OnAgentAsync(string status, DateTimeOffset connectedAt)
        {
            var agentId = ControlPlaneFixture.Unique("idleagent");
            await cp.InsertAgentAsync(agentId, status);
            await using (var conn = await cp.Db.OpenAsync(Ct))
                await conn.ExecuteAsync("UPDATE agents SET connected_at = @connectedAt WHERE agent_id = @agentId", new { connectedAt, agentId });
            return await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: null);
        }
        var offline = await OnAgentAsync(Agents.AgentStatus.Offline, now.AddHours(-3)); // away: every viewer ticket is refused
        var justBack = await OnAgentAsync(Agents.AgentStatus.Online, now.AddMinutes(-1)); // e.g. after a control-plane outage
        var longBack = await OnAgentAsync(Agents.AgentStatus.Online, now.AddHours(-3));

        (await Sweeper(StreamSpaceOptions.IdleTerminate).SweepAsync(Ct)).ShouldBe([longBack]);

        (await StateAsync(longBack)).State.ShouldBe(SessionState.Terminating);
        foreach (var id in new[] { offline, justBack })
        {
            (await StateAsync(id)).State.ShouldBe(SessionState.Running);
            (await CommandsAsync(id)).ShouldBeEmpty(id);
        }
        await EndAsync(offline, justBack);
    }

    [Fact]
    public async Task Input_this_replica_has_not_written_yet_keeps_a_session_from_idling_out()
    {
        var agentId = ControlPlaneFixture.Unique("idlelocal");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idlelocal");
        var now = DateTimeOffset.UtcNow;
        var typing = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: null);
        var idle = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-2), input: null);
        var activity = new SessionActivity(TimeProvider.System);
        activity.Attach(typing).Touch(); // the relay saw a key press; the next activity flush would write it

        (await Sweeper(StreamSpaceOptions.IdleTerminate, activity: activity).SweepAsync(Ct)).ShouldBe([idle]);

        (await StateAsync(typing)).State.ShouldBe(SessionState.Running);
        (await CommandsAsync(typing)).ShouldBeEmpty();
        await EndAsync(typing);
    }

    [Fact]
    public async Task Input_another_replica_has_not_written_yet_is_waited_for_one_activity_flush_interval()
    {
        var agentId = ControlPlaneFixture.Unique("idleflush");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("idleflush", maxSessions: 10);
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var flush = new StreamingOptions().ActivityFlushInterval;
        var now = clock.GetUtcNow();
        // Input at the last moment may sit in another replica's memory for up to one flush interval.
        var withinFlush = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-3), input: now - Timeout - flush / 2);
        var beyondFlush = await SessionAsync(agentId, userId, username, "running", changed: now.AddHours(-3), input: now - Timeout - flush * 2);

        (await Sweeper(StreamSpaceOptions.IdleHibernate, clock).SweepAsync(Ct)).ShouldBe([beyondFlush]);

        (await StateAsync(withinFlush)).State.ShouldBe(SessionState.Running);
        await EndAsync(withinFlush);
    }

    [Fact]
    public async Task Input_whose_write_failed_is_written_by_the_next_activity_flush()
    {
        var agentId = ControlPlaneFixture.Unique("flushfail");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("flushfail");
        var failing = await SessionAsync(agentId, userId, username, "hibernated", changed: DateTimeOffset.UtcNow, input: null);
        var other = await SessionAsync(agentId, userId, username, "hibernated", changed: DateTimeOffset.UtcNow, input: null);
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.Parse("2026-11-29T12:00:00Z"));
        var activity = new SessionActivity(clock);
        var flusher = new SessionActivityFlusher(activity, cp.Db, clock, Options.Create(new StreamingOptions()), NullLogger<SessionActivityFlusher>.Instance);
        var first = clock.GetUtcNow();
        activity.Attach(failing).Touch();
        activity.Attach(other).Touch();

        // The database refuses the write of one row: the whole batch is rolled back.
        var trigger = ControlPlaneFixture.Unique("fail_activity_");
        await ExecuteAsync(cp.Db.IsPostgres
            ? $"""
              CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
              CREATE TRIGGER {trigger} BEFORE UPDATE OF last_activity_at ON sessions FOR EACH ROW WHEN (NEW.id = '{failing}') EXECUTE FUNCTION {trigger}();
              """
            : $"CREATE TRIGGER {trigger} BEFORE UPDATE OF last_activity_at ON sessions WHEN NEW.id = '{failing}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
        try
        {
            await flusher.FlushAsync(Ct);
            (await LastActivityAsync(failing)).ShouldBeNull();
            (await LastActivityAsync(other)).ShouldBeNull();
        }
        finally
        {
            await ExecuteAsync(cp.Db.IsPostgres
                ? $"DROP TRIGGER {trigger} ON sessions; DROP FUNCTION {trigger}();" : $"DROP TRIGGER {trigger};");
        }
        clock.Advance(TimeSpan.FromSeconds(3));
        var later = clock.GetUtcNow();
        activity.LastInput(other).ShouldBe(first);
        activity.Attach(other).Touch(); // newer input meanwhile wins over the one put back

        await flusher.FlushAsync(Ct);

        (await LastActivityAsync(failing)).ShouldBe(first);
        (await LastActivityAsync(other)).ShouldBe(later);
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition(sql, cancellationToken: Ct));
    }

    private Task<DateTimeOffset?> LastActivityAsync(string id) =>
        cp.ScalarAsync<DateTimeOffset?>("SELECT last_activity_at FROM sessions WHERE id = @id", new { id });

    /// <summary>Ends sessions a test left running, so the other tests' sweeps do not find them idle later.</summary>
    private async Task EndAsync(params string[] ids)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync($"UPDATE sessions SET state = 'terminated' WHERE {cp.Db.InList("id", "ids")}", new { ids });
    }

    private IdleSessionSweeper Sweeper(string action, TimeProvider? time = null, TimeSpan? timeout = null, SessionActivity? activity = null)
    {
        var options = Options.Create(new StreamSpaceOptions { IdleTimeout = timeout ?? Timeout, IdleAction = action, IdleCheckInterval = TimeSpan.FromMinutes(1) });
        return new IdleSessionSweeper(cp.Db, cp.App.Services.GetRequiredService<Templates.TemplateCatalog>(), cp.App.Services.GetRequiredService<CommandOutbox>(),
            cp.App.Services.GetRequiredService<AuditLog>(), activity ?? new SessionActivity(TimeProvider.System), time ?? TimeProvider.System, options,
            Options.Create(new StreamingOptions()), NullLogger<IdleSessionSweeper>.Instance);
    }

    private async Task<string> SessionAsync(string agentId, string userId, string username, string state, DateTimeOffset changed, DateTimeOffset? input,
        string template = "xterm")
    {
        var id = ControlPlaneFixture.Unique("s");
        await cp.InsertSessionAsync(id, userId, username, state, agentId, template);
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync("UPDATE sessions SET updated_at = @changed, last_activity_at = @input WHERE id = @id", new { changed, input, id });
        return id;
    }

    private async Task<(string State, string? Reason)> StateAsync(string id)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return await conn.QuerySingleAsync<(string, string?)>("SELECT state, state_reason FROM sessions WHERE id = @id", new { id });
    }

    private async Task<List<(string Type, string State)>> CommandsAsync(string sessionId)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return (await conn.QueryAsync<(string, string)>("SELECT type, state FROM agent_commands WHERE session_id = @sessionId", new { sessionId })).AsList();
    }
}

public sealed class IdleSessionOptionsTests
{
    [Fact]
    public void Idle_handling_is_off_by_default_and_bad_settings_are_refused_at_start()
    {
        var defaults = new StreamSpaceOptions();
        defaults.IdleTimeout.ShouldBe(TimeSpan.Zero);
        defaults.Validate();

        Should.Throw<InvalidOperationException>(new StreamSpaceOptions { IdleTimeout = TimeSpan.FromSeconds(30) }.Validate)
            .Message.ShouldContain("IdleTimeout must be 0 (off) or at least 00:01:00");
        Should.Throw<InvalidOperationException>(new StreamSpaceOptions { IdleAction = "sleep" }.Validate)
            .Message.ShouldContain("IdleAction must be 'hibernate' or 'terminate', got 'sleep'");
        Should.Throw<InvalidOperationException>(new StreamSpaceOptions { IdleCheckInterval = TimeSpan.Zero }.Validate)
            .Message.ShouldContain("IdleCheckInterval must be positive");
    }
}

public sealed class IdleSessionTests_Sqlite(SqliteControlPlane cp) : IdleSessionTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class IdleSessionTests_Postgres(PostgresControlPlane cp) : IdleSessionTests(cp), IClassFixture<PostgresControlPlane>;
