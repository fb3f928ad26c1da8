using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The per-user quota holds under concurrency: checked and inserted in one write transaction.</summary>
public abstract class QuotaTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Fifty_parallel_creates_against_a_quota_of_five_give_exactly_five_sessions()
    {
        await cp.InsertAgentAsync("quota-agent", maxSessions: 500);
        var (client, userId, _) = await cp.QuickUserAsync("racer", maxSessions: 5);

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ =>
            client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)));

        responses.Count(r => r.StatusCode == HttpStatusCode.Created).ShouldBe(5);
        var refused = responses.Where(r => r.StatusCode != HttpStatusCode.Created).ToList();
        refused.Count.ShouldBe(45);
        foreach (var r in refused)
        {
            var json = await r.ShouldBeErrorAsync(HttpStatusCode.Forbidden);
            json.GetProperty("error").GetString().ShouldBe("Quota exceeded");
        }
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @userId", new { userId })).ShouldBe(5);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands c JOIN sessions s ON s.id = c.session_id WHERE s.user_id = @userId", new { userId })).ShouldBe(5);
    }

    [Fact]
    public async Task Ended_sessions_free_quota()
    {
        await cp.InsertAgentAsync("quota-agent", maxSessions: 500);
        var (client, _, _) = await cp.QuickUserAsync("freer", maxSessions: 1);
        var id = (await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("id").GetString()!;
        var refused = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        refused.GetProperty("message").GetString()!.ShouldContain("at most 1");

        // Terminating still counts (its resources are not yet freed); terminated does not.
        await (await client.DeleteAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE sessions SET state = 'terminated' WHERE id = @id", new { id });
        await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
    }
}

public sealed class QuotaTests_Sqlite(SqliteControlPlane cp) : QuotaTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class QuotaTests_Postgres(PostgresControlPlane cp) : QuotaTests(cp), IClassFixture<PostgresControlPlane>;
