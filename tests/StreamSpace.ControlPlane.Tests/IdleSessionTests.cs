using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
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
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = @action AND target = @id AND actor = 'system'",
                new { action = AuditActions.SessionIdle, id })).ShouldBe(1);
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

    /// <summary>Ends sessions a test left running, so the other tests' sweeps do not find them idle later.</summary>
    private async Task EndAsync(params string[] ids)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync($"UPDATE sessions SET state = 'terminated' WHERE {cp.Db.InList("id", "ids")}", new { ids });
    }

    private IdleSessionSweeper Sweeper(string action, TimeProvider? time = null, TimeSpan? timeout = null)
    {
        var options = Options.Create(new StreamSpaceOptions { IdleTimeout = timeout ?? Timeout, IdleAction = action, IdleCheckInterval = TimeSpan.FromMinutes(1) });
        return new IdleSessionSweeper(cp.Db, cp.App.Services.GetRequiredService<Templates.TemplateCatalog>(), cp.App.Services.GetRequiredService<CommandOutbox>(),
            cp.App.Services.GetRequiredService<AuditLog>(), time ?? TimeProvider.System, options, NullLogger<IdleSessionSweeper>.Instance);
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
