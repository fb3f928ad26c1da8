using System.Net;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Reads about an agent's sessions that run often (the admin agents page every 2 s, every hello, every reconciliation pass)
/// cost the same whatever history the agent has: they read its live-session counter (M0004/M0005), not its ended sessions.
/// The agent index holds no state (M0006), so a read of "the agent's live sessions" from <c>sessions</c> walks them all.
/// </summary>
public abstract class AgentHistoryCostTests(ControlPlaneFixture cp)
{
    /// <summary>Ended sessions seeded on the agent: enough that reading them costs thousands of units on either database.</summary>
    private const int History = 5000;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private long Bounded => QueryCost.HandfulOfRows(cp.Kind);

    [Fact]
    public async Task The_agents_list_and_an_agent_read_its_live_counter_not_every_session_it_ever_had()
    {
        var (agentId, userId, username) = await AgentWithHistoryAsync("hist-list");
        foreach (var (state, i) in new[] { "running", "hibernated", "terminating" }.Select((s, i) => (s, i)))
            await cp.InsertSessionAsync($"{username}-xterm-live{i}", userId, username, state, agentId);
        var other = ControlPlaneFixture.Unique("hist-other");
        await cp.InsertAgentAsync(other);
        await cp.InsertSessionAsync($"{username}-xterm-elsewhere", userId, username, "pending", other);

        // The counts are the ones a fresh count of the rows gives.
        var admin = await cp.AdminClientAsync();
        var shown = await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        shown.GetProperty("activeSessions").GetInt32().ShouldBe(3);
        var list = await (await admin.GetAsync("/api/v1/agents", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        foreach (var agent in list.EnumerateArray())
        {
            var id = agent.GetProperty("agentId").GetString()!;
            var counted = await cp.ScalarAsync<long>(
                $"SELECT COUNT(*) FROM sessions WHERE agent_id = @id AND state IN ({Sessions.SessionState.LiveSqlList})", new { id });
            agent.GetProperty("activeSessions").GetInt32().ShouldBe((int)counted, $"agent {id}");
        }
        list.EnumerateArray().Single(a => a.GetProperty("agentId").GetString() == other).GetProperty("activeSessions").GetInt32().ShouldBe(1);

        (await QueryCost.MeasureAsync(cp, AgentsApi.FindSql, new Dictionary<string, object> { ["agentId"] = agentId }))
            .ShouldBeLessThan(Bounded, "reading one agent");
        // The list reads every agent row (a few here), and none of the history.
        (await QueryCost.MeasureAsync(cp, AgentsApi.ListSql, new Dictionary<string, object>())).ShouldBeLessThan(Bounded, "listing the agents");
    }

    [Fact]
    public async Task A_hello_reads_whether_the_agent_has_live_sessions_from_its_counter()
    {
        var (agentId, userId, username) = await AgentWithHistoryAsync("hist-hello");
        var sql = $"SELECT {AgentStatusWriter.LiveOn("a.agent_id")} FROM agents a WHERE a.agent_id = @agentId";
        var args = new Dictionary<string, object> { ["agentId"] = agentId };

        (await LiveOnAsync()).ShouldBeFalse();
        (await QueryCost.MeasureAsync(cp, sql, args)).ShouldBeLessThan(Bounded, "a hello of an agent with history and nothing live");

        await cp.InsertSessionAsync($"{username}-xterm-back", userId, username, "hibernated", agentId);
        (await LiveOnAsync()).ShouldBeTrue();

        async Task<bool> LiveOnAsync()
        {
            await using var conn = await cp.Db.OpenAsync(Ct);
            return await conn.ExecuteScalarAsync<bool>(sql, new { agentId });
        }
    }

    [Fact]
    public async Task Reconciling_an_agent_with_nothing_live_reads_none_of_its_ended_sessions()
    {
        var (agentId, userId, username) = await AgentWithHistoryAsync("hist-reconcile");
        var args = new Dictionary<string, object> { ["agentId"] = agentId };

        (await PlacedAsync()).ShouldBeEmpty();
        (await QueryCost.MeasureAsync(cp, AgentReconciler.PlacedSql(cp.Db), args)).ShouldBeLessThan(Bounded, "a pass over an agent with nothing live");

        // With live sessions it finds exactly them (and then reads the agent's sessions: see PlacedSql).
        await cp.InsertSessionAsync($"{username}-xterm-run", userId, username, "running", agentId);
        await cp.InsertSessionAsync($"{username}-xterm-stop", userId, username, "terminating", agentId);
        (await PlacedAsync()).ShouldBe([($"{username}-xterm-run", "running"), ($"{username}-xterm-stop", "terminating")], ignoreOrder: true);

        async Task<List<(string Id, string State)>> PlacedAsync()
        {
            await using var conn = await cp.Db.OpenAsync(Ct);
            return (await conn.QueryAsync<(string, string)>(AgentReconciler.PlacedSql(cp.Db), new { agentId })).ToList();
        }
    }

    /// <summary>An online agent with <see cref="History"/> ended sessions and none live.</summary>
    private async Task<(string AgentId, string UserId, string Username)> AgentWithHistoryAsync(string prefix)
    {
        var agentId = ControlPlaneFixture.Unique(prefix);
        await cp.InsertAgentAsync(agentId, maxSessions: 100);
        var (_, userId, username) = await cp.QuickUserAsync(prefix);
        await cp.InsertEndedSessionsAsync(userId, username, agentId, History);
        return (agentId, userId, username);
    }
}

public sealed class AgentHistoryCostTests_Sqlite(SqliteControlPlane cp) : AgentHistoryCostTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class AgentHistoryCostTests_Postgres(PostgresControlPlane cp) : AgentHistoryCostTests(cp), IClassFixture<PostgresControlPlane>;
