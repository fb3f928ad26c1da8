using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Finished commands are pruned after <see cref="StreamSpaceOptions.CommandRetention"/>; open ones never are, and
/// the succeeded start of a live session stays because reconciliation reads it.
/// </summary>
public abstract class CommandRetentionTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    /// <summary>
    /// Shorter than the app's own retention (7 days): the fixture's background pruner must not delete this test's
    /// rows while the test's pruner works on them (a full run once saw it take 8 of 23), so all rows are younger than 7 days.
    /// </summary>
    private static readonly TimeSpan Retention = TimeSpan.FromDays(1);

    [Fact]
    public async Task Finished_commands_older_than_the_retention_go_and_everything_else_stays()
    {
        var agentId = ControlPlaneFixture.Unique("prune");
        await cp.InsertAgentAsync(agentId);
        var (_, userId, username) = await cp.QuickUserAsync("prune");
        var live = ControlPlaneFixture.Unique("live");
        var ended = ControlPlaneFixture.Unique("ended");
        await cp.InsertSessionAsync(live, userId, username, "running", agentId);
        await cp.InsertSessionAsync(ended, userId, username, "terminated", agentId);
        var now = DateTimeOffset.UtcNow;
        var old = now - Retention - TimeSpan.FromHours(1);
        var recent = now - Retention + TimeSpan.FromHours(1);

        var pruned = new[]
        {
            await InsertCommandAsync(agentId, ended, CommandTypes.SessionStart, CommandState.Succeeded, old),
            await InsertCommandAsync(agentId, ended, CommandTypes.SessionStop, CommandState.Failed, old),
            await InsertCommandAsync(agentId, live, CommandTypes.StreamOpen, CommandState.Expired, old),
            await InsertCommandAsync(agentId, live, CommandTypes.SessionHibernate, CommandState.Succeeded, old),
            await InsertCommandAsync(agentId, null, CommandTypes.SessionStop, CommandState.Succeeded, old),
        };
        var kept = new[]
        {
            await InsertCommandAsync(agentId, live, CommandTypes.SessionStart, CommandState.Succeeded, old), // reconciliation reads it
            await InsertCommandAsync(agentId, live, CommandTypes.SessionWake, CommandState.Pending, old),
            await InsertCommandAsync(agentId, live, CommandTypes.SessionWake, CommandState.Sent, old),
            await InsertCommandAsync(agentId, live, CommandTypes.SessionWake, CommandState.Acked, old),
            await InsertCommandAsync(agentId, ended, CommandTypes.SessionStop, CommandState.Succeeded, recent),
            await InsertCommandAsync(agentId, ended, CommandTypes.StreamOpen, CommandState.Expired, recent),
        };

        (await Pruner().PruneAsync(Ct)).ShouldBeGreaterThanOrEqualTo(pruned.Length);

        var left = (await QueryIdsAsync(agentId)).ToHashSet(StringComparer.Ordinal);
        left.ShouldBe(kept.ToHashSet(StringComparer.Ordinal), ignoreOrder: true);
    }

    [Fact]
    public async Task A_backlog_larger_than_one_batch_is_pruned_completely()
    {
        var agentId = ControlPlaneFixture.Unique("backlog");
        await cp.InsertAgentAsync(agentId);
        var old = DateTimeOffset.UtcNow - Retention - TimeSpan.FromHours(12);
        for (var i = 0; i < 23; i++) await InsertCommandAsync(agentId, null, CommandTypes.SessionStop, CommandState.Succeeded, old);

        (await Pruner(batchSize: 5).PruneAsync(Ct)).ShouldBeGreaterThanOrEqualTo(23);

        (await QueryIdsAsync(agentId)).ShouldBeEmpty();
    }

    [Fact]
    public async Task An_expired_start_or_stop_stays_until_its_agent_has_said_hello_since()
    {
        var old = DateTimeOffset.UtcNow - Retention - TimeSpan.FromHours(2);
        var (_, userId, username) = await cp.QuickUserAsync("unconfirmed");
        // Away since before the commands expired (or never connected): DELETE /agents/{id} counts these rows for its 409.
        var away = ControlPlaneFixture.Unique("away");
        await cp.InsertAgentAsync(away, Agents.AgentStatus.Offline);
        await ConnectedAsync(away, old - TimeSpan.FromDays(3));
        var neverSeen = ControlPlaneFixture.Unique("never");
        await cp.InsertAgentAsync(neverSeen, Agents.AgentStatus.Offline);
        // Back after the expiry: its hello reconciled what it still ran.
        var back = ControlPlaneFixture.Unique("back");
        await cp.InsertAgentAsync(back, Agents.AgentStatus.Offline);
        await ConnectedAsync(back, old + TimeSpan.FromMinutes(30));
        // Registered long before their commands (only commands of the agent row's own lifetime count).
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync(new CommandDefinition($"UPDATE agents SET created_at = @at WHERE {cp.Db.InList("agent_id", "ids")}",
                new { at = old - TimeSpan.FromDays(7), ids = new[] { away, neverSeen, back } }, cancellationToken: Ct));

        async Task<string> SessionAsync(string agentId)
        {
            var id = ControlPlaneFixture.Unique("s");
            await cp.InsertSessionAsync(id, userId, username, "terminated", agentId);
            return id;
        }
        var kept = new[]
        {
            await InsertCommandAsync(away, await SessionAsync(away), CommandTypes.SessionStop, CommandState.Expired, old),
            await InsertCommandAsync(away, await SessionAsync(away), CommandTypes.SessionStart, CommandState.Expired, old),
            await InsertCommandAsync(neverSeen, await SessionAsync(neverSeen), CommandTypes.SessionStop, CommandState.Expired, old),
        };
        var pruned = new[]
        {
            await InsertCommandAsync(away, await SessionAsync(away), CommandTypes.SessionStart, CommandState.Expired, old, attempts: 0), // never sent
            await InsertCommandAsync(away, await SessionAsync(away), CommandTypes.StreamOpen, CommandState.Expired, old),
            await InsertCommandAsync(away, await SessionAsync(away), CommandTypes.SessionStop, CommandState.Succeeded, old),
            await InsertCommandAsync(back, await SessionAsync(back), CommandTypes.SessionStop, CommandState.Expired, old),
        };

        (await Pruner().PruneAsync(Ct)).ShouldBeGreaterThanOrEqualTo(pruned.Length);

        var left = (await QueryIdsAsync(away)).Concat(await QueryIdsAsync(neverSeen)).Concat(await QueryIdsAsync(back));
        left.ShouldBe(kept, ignoreOrder: true);
    }

    private async Task ConnectedAsync(string agentId, DateTimeOffset at)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition("UPDATE agents SET connected_at = @at WHERE agent_id = @agentId", new { at, agentId }, cancellationToken: Ct));
    }

    private CommandPruner Pruner(int batchSize = 5000) =>
        new(cp.Db, TimeProvider.System, Options.Create(new StreamSpaceOptions { CommandRetention = Retention }), NullLogger<CommandPruner>.Instance)
        {
            BatchSize = batchSize,
        };

    /// <summary>A command row as the outbox leaves it, last updated (and last scheduled) at <paramref name="at"/>.</summary>
    private async Task<string> InsertCommandAsync(string agentId, string? sessionId, string type, string state, DateTimeOffset at, int attempts = 1)
    {
        var id = Guid.NewGuid().ToString("N");
        await using var conn = await cp.Db.OpenAsync(Ct);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, result, error, created_at, updated_at)
            VALUES (@id, @agentId, @sessionId, @type, '{}', @state, @attempts, @at, @expires, NULL, NULL, @created, @at)
            """,
            new { id, agentId, sessionId, type, state, attempts, at, expires = at + TimeSpan.FromMinutes(10), created = at - TimeSpan.FromMinutes(1) },
            cancellationToken: Ct));
        return id;
    }

    private async Task<IReadOnlyList<string>> QueryIdsAsync(string agentId)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return (await conn.QueryAsync<string>(new CommandDefinition(
            "SELECT id FROM agent_commands WHERE agent_id = @agentId", new { agentId }, cancellationToken: Ct))).ToList();
    }
}

/// <summary>The retention settings are checked at start like every other setting.</summary>
public sealed class CommandRetentionOptionsTests
{
    [Theory]
    [InlineData("CommandRetention")]
    [InlineData("CommandPruneInterval")]
    public void A_retention_or_prune_interval_that_is_not_positive_is_refused_at_start(string setting)
    {
        var options = new StreamSpaceOptions();
        if (setting == "CommandRetention") options.CommandRetention = TimeSpan.Zero;
        else options.CommandPruneInterval = TimeSpan.FromSeconds(-1);

        Should.Throw<InvalidOperationException>(options.Validate).Message.ShouldContain($"{setting} must be positive");
    }
}

public sealed class CommandRetentionTests_Sqlite(SqliteControlPlane cp) : CommandRetentionTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class CommandRetentionTests_Postgres(PostgresControlPlane cp) : CommandRetentionTests(cp), IClassFixture<PostgresControlPlane>;
