using System.Net;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Ended sessions are deleted, with their finished commands and viewer tickets, once they ended longer than
/// <see cref="StreamSpaceOptions.SessionRetention"/> ago; live ones never are, nor ended ones the agent may still run, nor
/// the last record of where a user's persistent home is. The audit log stays.
/// </summary>
public abstract class SessionRetentionTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    /// <summary>
    /// Shorter than the app's own retention (30 days), so the fixture's background pruner never deletes this test's rows:
    /// every row here is younger than 30 days.
    /// </summary>
    private static readonly TimeSpan Retention = TimeSpan.FromDays(1);
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly DateTimeOffset Old = Now - Retention - TimeSpan.FromHours(2);
    private static readonly DateTimeOffset Recent = Now - Retention + TimeSpan.FromHours(1);

    [Fact]
    public async Task Sessions_that_ended_before_the_retention_go_with_their_finished_commands_and_tickets_and_everything_else_stays()
    {
        var agentId = ControlPlaneFixture.Unique("ret");
        await cp.InsertAgentAsync(agentId);
        // Away since before its commands expired: an expired stop there means the agent may still run the session.
        var away = ControlPlaneFixture.Unique("away");
        await cp.InsertAgentAsync(away, Agents.AgentStatus.Offline);
        // Back after the expiry: its hello reconciled what it still ran.
        var back = ControlPlaneFixture.Unique("back");
        await cp.InsertAgentAsync(back, Agents.AgentStatus.Offline);
        await using (var conn = await cp.Db.OpenAsync(Ct))
        {
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE agents SET created_at = @created, connected_at = @connected WHERE agent_id = @away",
                new { created = Old - TimeSpan.FromDays(7), connected = Old - TimeSpan.FromDays(3), away }, cancellationToken: Ct));
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE agents SET created_at = @created, connected_at = @connected WHERE agent_id = @back",
                new { created = Old - TimeSpan.FromDays(7), connected = Old + TimeSpan.FromMinutes(30), back }, cancellationToken: Ct));
        }
        var (_, userId, username) = await cp.QuickUserAsync("ret");
        var liveBefore = await LiveCountsAsync(userId, agentId);

        var oldTerminated = await SessionAsync(userId, username, SessionState.Terminated, agentId, Old);
        var oldFailed = await SessionAsync(userId, username, SessionState.Failed, agentId, Old);
        var confirmedExpiredStop = await SessionAsync(userId, username, SessionState.Terminated, back, Old);
        await SessionAsync(userId, username, SessionState.Failed, null, Old); // failed before placement: no agent
        var deletedCommands = new[]
        {
            await CommandAsync(agentId, oldTerminated, CommandTypes.SessionStart, CommandState.Succeeded, Old),
            await CommandAsync(agentId, oldTerminated, CommandTypes.StreamOpen, CommandState.Expired, Old),
            await CommandAsync(agentId, oldTerminated, CommandTypes.SessionStop, CommandState.Succeeded, Old),
            await CommandAsync(agentId, oldFailed, CommandTypes.SessionStart, CommandState.Failed, Old),
            await CommandAsync(back, confirmedExpiredStop, CommandTypes.SessionStop, CommandState.Expired, Old),
        };
        var deletedTickets = new[] { await TicketAsync(oldTerminated, userId), await TicketAsync(oldFailed, userId) };
        // The audit log is history: it stays, whatever refers to the session.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync(new CommandDefinition(
                "INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@Old, @username, 'session.created', @oldTerminated, NULL, NULL)",
                new { Old, username, oldTerminated }, cancellationToken: Ct));

        var kept = new List<string>
        {
            await SessionAsync(userId, username, SessionState.Terminated, agentId, Old, ended: Recent),
            await SessionAsync(userId, username, SessionState.Failed, agentId, Old, ended: Recent),
        };
        foreach (var live in SessionState.Live) kept.Add(await SessionAsync(userId, username, live, agentId, Old));
        var openStop = await SessionAsync(userId, username, SessionState.Terminated, agentId, Old);
        var unconfirmedStop = await SessionAsync(userId, username, SessionState.Terminated, away, Old);
        var unconfirmedStart = await SessionAsync(userId, username, SessionState.Failed, away, Old);
        kept.AddRange([openStop, unconfirmedStop, unconfirmedStart]);
        var keptCommands = new[]
        {
            await CommandAsync(agentId, openStop, CommandTypes.SessionStop, CommandState.Pending, Old),
            await CommandAsync(agentId, openStop, CommandTypes.SessionStart, CommandState.Succeeded, Old),
            await CommandAsync(away, unconfirmedStop, CommandTypes.SessionStop, CommandState.Expired, Old),
            await CommandAsync(away, unconfirmedStart, CommandTypes.SessionStart, CommandState.Expired, Old),
        };
        var keptTicket = await TicketAsync(openStop, userId);

        (await Pruner().PruneAsync(Ct)).ShouldBeGreaterThanOrEqualTo(4);

        (await IdsAsync("sessions", "user_id = @userId", new { userId })).ShouldBe(kept, ignoreOrder: true);
        var commands = await IdsAsync("agent_commands", "agent_id IN (@agentId, @away, @back)", new { agentId, away, back });
        commands.ShouldBe(keptCommands, ignoreOrder: true);
        commands.Intersect(deletedCommands).ShouldBeEmpty();
        var tickets = await IdsAsync("viewer_tickets", "user_id = @userId", new { userId });
        tickets.ShouldBe([keptTicket]);
        tickets.Intersect(deletedTickets).ShouldBeEmpty();
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE target = @oldTerminated", new { oldTerminated })).ShouldBe(1);
        (await LiveCountsAsync(userId, agentId)).ShouldBe((liveBefore.User + SessionState.Live.Count, liveBefore.Agent + SessionState.Live.Count));
    }

    [Fact]
    public async Task The_newest_session_with_a_persistent_home_on_an_agent_stays_so_deleting_its_user_still_deletes_that_home()
    {
        var agentId = ControlPlaneFixture.Unique("home");
        var other = ControlPlaneFixture.Unique("home");
        await cp.InsertAgentAsync(agentId);
        await cp.InsertAgentAsync(other);
        var (_, userId, username) = await cp.QuickUserAsync("home");
        await SessionAsync(userId, username, SessionState.Terminated, agentId, Old - TimeSpan.FromDays(1), persistentHome: true);
        var newest = await SessionAsync(userId, username, SessionState.Terminated, agentId, Old, persistentHome: true);
        await SessionAsync(userId, username, SessionState.Terminated, other, Old, persistentHome: false);

        (await Pruner().PruneAsync(Ct)).ShouldBeGreaterThanOrEqualTo(2);

        (await IdsAsync("sessions", "user_id = @userId", new { userId })).ShouldBe([newest]);
        var admin = await cp.AdminClientAsync();
        (await admin.DeleteAsync($"/api/v1/users/{userId}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE agent_id = @agentId AND type = @type",
            new { agentId, type = CommandTypes.HomeDelete })).ShouldBe(1);
    }

    [Fact]
    public async Task A_backlog_larger_than_one_batch_is_pruned_completely()
    {
        var agentId = ControlPlaneFixture.Unique("backlog");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("backlog");
        for (var i = 0; i < 23; i++)
        {
            var id = await SessionAsync(userId, username, SessionState.Terminated, agentId, Old);
            await CommandAsync(agentId, id, CommandTypes.SessionStop, CommandState.Succeeded, Old);
        }

        using var log = new CapturedLog();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(log));
        var pruned = await Pruner(batchSize: 5, logger: loggers.CreateLogger<EndedSessionPruner>()).PruneAsync(Ct);
        pruned.ShouldBeGreaterThanOrEqualTo(23);

        (await IdsAsync("sessions", "user_id = @userId", new { userId })).ShouldBeEmpty();
        (await IdsAsync("agent_commands", "agent_id = @agentId", new { agentId })).ShouldBeEmpty();
        // One summary line for the pass, saying how many and the retention; a pass that deletes nothing says nothing.
        // (A progress line may come first on a slow machine: a pass that takes over 2 s says how far it got.)
        log.Entries.Select(e => e.Message).Where(m => m.StartsWith("Pruned ", StringComparison.Ordinal)).ShouldHaveSingleItem()
            .ShouldStartWith($"Pruned {pruned} sessions that ended more than {Retention} ago");
        var lines = log.Entries.Count;
        (await Pruner(logger: loggers.CreateLogger<EndedSessionPruner>()).PruneAsync(Ct)).ShouldBe(0);
        log.Entries.Count.ShouldBe(lines);
    }

    [Fact]
    public async Task A_retention_of_zero_keeps_every_ended_session_forever()
    {
        var agentId = ControlPlaneFixture.Unique("forever");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("forever");
        var ancient = await SessionAsync(userId, username, SessionState.Terminated, agentId, Now - TimeSpan.FromDays(3650));
        var old = await SessionAsync(userId, username, SessionState.Failed, agentId, Old);
        var command = await CommandAsync(agentId, ancient, CommandTypes.SessionStop, CommandState.Succeeded, Old);

        (await Pruner(retention: TimeSpan.Zero).PruneAsync(Ct)).ShouldBe(0);

        (await IdsAsync("sessions", "user_id = @userId", new { userId })).ShouldBe([ancient, old], ignoreOrder: true);
        (await IdsAsync("agent_commands", "agent_id = @agentId", new { agentId })).ShouldBe([command]);
    }

    [Fact]
    public async Task The_running_service_prunes_at_start_and_then_at_its_interval_and_not_at_all_with_a_retention_of_zero()
    {
        var agentId = ControlPlaneFixture.Unique("loop");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("loop");
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(Now);
        var endedLongAgo = await SessionAsync(userId, username, SessionState.Terminated, agentId, Old);
        var endsItsRetentionWithinTheHour = await SessionAsync(userId, username, SessionState.Failed, agentId, Old, ended: Recent);

        var forever = Pruner(retention: TimeSpan.Zero, time: clock);
        await forever.StartAsync(Ct);
        await forever.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        await forever.StopAsync(CancellationToken.None);
        (await IdsAsync("sessions", "user_id = @userId", new { userId })).Count.ShouldBe(2);

        var pruner = Pruner(time: clock);
        await pruner.StartAsync(Ct);
        try
        {
            await Hub.HubControlPlane.EventuallyAsync(async () => !(await IdsAsync("sessions", "user_id = @userId", new { userId })).Contains(endedLongAgo),
                TimeSpan.FromSeconds(30), "the pass at start deleted the session that ended before the retention");
            (await IdsAsync("sessions", "user_id = @userId", new { userId })).ShouldBe([endsItsRetentionWithinTheHour]);

            clock.Advance(new StreamSpaceOptions().SessionPruneInterval + TimeSpan.FromMinutes(1));
            await Hub.HubControlPlane.EventuallyAsync(async () => (await IdsAsync("sessions", "user_id = @userId", new { userId })).Count == 0,
                TimeSpan.FromSeconds(30), "the next pass, an interval later, deleted the session whose retention ended since");
        }
        finally
        {
            await pruner.StopAsync(CancellationToken.None);
        }
    }

    private EndedSessionPruner Pruner(int batchSize = 1000, TimeSpan? retention = null, ILogger<EndedSessionPruner>? logger = null,
        TimeProvider? time = null) =>
        new(cp.Db, time ?? TimeProvider.System, Options.Create(new StreamSpaceOptions { SessionRetention = retention ?? Retention }),
            logger ?? NullLogger<EndedSessionPruner>.Instance)
        {
            BatchSize = batchSize,
        };

    /// <summary>A session created at <paramref name="created"/> whose last state change was at <paramref name="ended"/> (else the same).</summary>
    private async Task<string> SessionAsync(string userId, string username, string state, string? agentId, DateTimeOffset created,
        DateTimeOffset? ended = null, bool persistentHome = false)
    {
        var id = ControlPlaneFixture.Unique($"{username}-xterm-");
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO sessions (id, user_id, username, template, state, state_reason, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@id, @userId, @username, 'xterm', @state, NULL, @agentId, '250m', '256Mi', @persistentHome, @created, @updated)
            """,
            new { id, userId, username, state, agentId, persistentHome, created, updated = ended ?? created }, cancellationToken: Ct));
        return id;
    }

    /// <summary>A command row as the outbox leaves it, last updated at <paramref name="at"/> and sent once.</summary>
    private async Task<string> CommandAsync(string agentId, string sessionId, string type, string state, DateTimeOffset at)
    {
        var id = Guid.NewGuid().ToString("N");
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, result, error, created_at, updated_at)
            VALUES (@id, @agentId, @sessionId, @type, '{}', @state, 1, @at, @expires, NULL, NULL, @created, @at)
            """,
            new { id, agentId, sessionId, type, state, at, expires = at + TimeSpan.FromMinutes(10), created = at - TimeSpan.FromMinutes(1) },
            cancellationToken: Ct));
        return id;
    }

    private async Task<string> TicketAsync(string sessionId, string userId)
    {
        var id = Guid.NewGuid().ToString("N");
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO viewer_tickets (id, ticket_hash, session_id, user_id, expires_at, used_at, created_at)
            VALUES (@id, @hash, @sessionId, @userId, @expires, NULL, @created)
            """,
            new { id, hash = id + id, sessionId, userId, expires = Now + TimeSpan.FromMinutes(1), created = Now }, cancellationToken: Ct));
        return id;
    }

    private async Task<List<string>> IdsAsync(string table, string where, object args)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return (await conn.QueryAsync<string>(new CommandDefinition($"SELECT id FROM {table} WHERE {where}", args, cancellationToken: Ct))).ToList();
    }

    private async Task<(long User, long Agent)> LiveCountsAsync(string userId, string agentId) =>
        (await cp.ScalarAsync<long>("SELECT COALESCE(MAX(live), 0) FROM user_live_sessions WHERE user_id = @userId", new { userId }),
         await cp.ScalarAsync<long>("SELECT COALESCE(MAX(live), 0) FROM agent_live_sessions WHERE agent_id = @agentId", new { agentId }));
}

/// <summary>The session retention is checked at start like every other setting; 0 keeps ended sessions forever.</summary>
public sealed class SessionRetentionOptionsTests
{
    [Theory]
    [InlineData("-1.00:00:00", "StreamSpace__SessionRetention must be 0 (keep ended sessions forever) or at least 01:00:00")]
    [InlineData("00:30:00", "StreamSpace__SessionRetention must be 0 (keep ended sessions forever) or at least 01:00:00")]
    [InlineData("36501.00:00:00", "StreamSpace__SessionRetention must be at most 36500.00:00:00")]
    public void A_bad_session_retention_is_refused_at_start_saying_what_it_takes(string value, string message)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StreamSpace:SessionRetention"] = value, ["StreamSpace:DataFolder"] = Path.GetTempPath(),
        }).Build();

        Should.Throw<StreamSpaceConfigurationException>(() => StreamSpaceOptions.FromConfiguration(config)).Message.ShouldContain(message);
    }

    [Fact]
    public void Zero_an_hour_and_the_longest_look_back_are_taken_and_the_default_is_30_days()
    {
        new StreamSpaceOptions().SessionRetention.ShouldBe(TimeSpan.FromDays(30));
        new StreamSpaceOptions { SessionRetention = TimeSpan.Zero }.Validate();
        new StreamSpaceOptions { SessionRetention = TimeSpan.FromHours(1) }.Validate();
        new StreamSpaceOptions { SessionRetention = StreamSpaceOptions.MaxLookBack }.Validate();
        Should.Throw<StreamSpaceConfigurationException>(new StreamSpaceOptions { SessionPruneInterval = TimeSpan.Zero }.Validate).Message
            .ShouldContain("StreamSpace__SessionPruneInterval must be positive");
    }
}

public sealed class SessionRetentionTests_Sqlite(SqliteControlPlane cp) : SessionRetentionTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class SessionRetentionTests_Postgres(PostgresControlPlane cp) : SessionRetentionTests(cp), IClassFixture<PostgresControlPlane>;
