using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>Agent capacity holds under concurrency: 3 agents × 5 slots, 15 concurrent creates fill them exactly.</summary>
public abstract class PlacementCapacityRaceTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Fifteen_concurrent_creates_fill_three_agents_of_five_exactly_and_the_sixteenth_is_503_full()
    {
        var users = new List<HttpClient>();
        for (var i = 0; i < 16; i++) users.Add((await cp.QuickUserAsync("cap", maxSessions: 5)).Client);
        foreach (var agent in new[] { "cap-1", "cap-2", "cap-3" })
            await cp.InsertAgentAsync(agent, maxSessions: 5);

        var responses = await Task.WhenAll(users.Take(15).Select(u => u.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)));
        foreach (var r in responses) await r.ShouldBeJsonAsync(HttpStatusCode.Created);

        await using (var conn = await cp.Db.OpenAsync(Ct))
        {
            var perAgent = (await Dapper.SqlMapper.QueryAsync<(string AgentId, long Count)>(conn,
                "SELECT agent_id, COUNT(*) FROM sessions GROUP BY agent_id ORDER BY agent_id")).ToList();
            perAgent.ShouldBe([("cap-1", 5L), ("cap-2", 5L), ("cap-3", 5L)]);
        }

        var error = await (await users[15].PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
        var reasons = error.GetProperty("reasons").EnumerateArray().Select(r => r.GetProperty("reason").GetString()).ToList();
        reasons.ShouldBe(["full: 5/5 sessions, its registered maximum", "full: 5/5 sessions, its registered maximum", "full: 5/5 sessions, its registered maximum"]);

        var agents = await (await (await cp.AdminClientAsync()).GetAsync("/api/v1/agents", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        foreach (var a in agents.EnumerateArray())
        {
            a.GetProperty("capacity").GetInt32().ShouldBe(5);
            a.GetProperty("activeSessions").GetInt32().ShouldBe(5);
        }
    }
}

public sealed class PlacementCapacityRaceTests_Sqlite(SqliteControlPlane cp) : PlacementCapacityRaceTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class PlacementCapacityRaceTests_Postgres(PostgresControlPlane cp) : PlacementCapacityRaceTests(cp), IClassFixture<PostgresControlPlane>;
