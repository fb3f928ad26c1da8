using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Placement and quota read live-session counters that triggers on <c>sessions</c> keep (migration M0004). Whatever
/// writes the rows (the API, the hub's transitions, plain SQL), the counters must equal a fresh count.
/// </summary>
public abstract class LiveSessionCounterTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Counters_equal_a_fresh_count_after_inserts_transitions_moves_and_deletes()
    {
        var agentA = ControlPlaneFixture.Unique("count-a");
        var agentB = ControlPlaneFixture.Unique("count-b");
        await cp.InsertAgentAsync(agentA, maxSessions: 100);
        await cp.InsertAgentAsync(agentB, status: "offline", maxSessions: 100);
        var (client, userId, username) = await cp.QuickUserAsync("counter", maxSessions: 100);

        var ids = new List<string>();
        foreach (var _ in Enumerable.Range(0, 6))
            ids.Add((await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("id").GetString()!);
        await CountersMatchAsync(agentA, agentB, userId, expectedUser: 6);

        // Deleting makes it terminating (still live); ending, failing, moving to another agent and deleting rows by SQL.
        await (await client.DeleteAsync($"/api/v1/sessions/{ids[0]}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await CountersMatchAsync(agentA, agentB, userId, expectedUser: 6);
        await cp.ScalarAsync<long>("UPDATE sessions SET state = 'terminated' WHERE id = @id RETURNING 1", new { id = ids[0] });
        await cp.ScalarAsync<long>("UPDATE sessions SET state = 'failed' WHERE id = @id RETURNING 1", new { id = ids[1] });
        await cp.ScalarAsync<long>("UPDATE sessions SET state = 'running' WHERE id = @id RETURNING 1", new { id = ids[2] });
        await cp.ScalarAsync<long>("UPDATE sessions SET agent_id = @agentB WHERE id = @id RETURNING 1", new { agentB, id = ids[3] });
        await cp.ScalarAsync<long>("DELETE FROM agent_commands WHERE session_id = @id RETURNING 1", new { id = ids[4] });
        await cp.ScalarAsync<long>("DELETE FROM sessions WHERE id = @id RETURNING 1", new { id = ids[4] });
        await cp.InsertSessionAsync(ControlPlaneFixture.Unique("direct"), userId, username, "hibernated", agentB);
        await cp.InsertSessionAsync(ControlPlaneFixture.Unique("ended"), userId, username, "terminated", agentB);
        // Live now: ids[2] and ids[5] on A, ids[3] and the direct hibernated one on B.
        await CountersMatchAsync(agentA, agentB, userId, expectedUser: 4);
    }

    private async Task CountersMatchAsync(string agentA, string agentB, string userId, long expectedUser)
    {
        const string live = "'pending', 'starting', 'running', 'hibernating', 'hibernated', 'waking', 'terminating'";
        foreach (var agentId in new[] { agentA, agentB })
        {
            var counted = await cp.ScalarAsync<long>($"SELECT COUNT(*) FROM sessions WHERE agent_id = @agentId AND state IN ({live})", new { agentId });
            var kept = await cp.ScalarAsync<long?>("SELECT live FROM agent_live_sessions WHERE agent_id = @agentId", new { agentId }) ?? 0;
            kept.ShouldBe(counted, $"agent {agentId}");
        }
        var userCounted = await cp.ScalarAsync<long>($"SELECT COUNT(*) FROM sessions WHERE user_id = @userId AND state IN ({live})", new { userId });
        userCounted.ShouldBe(expectedUser);
        (await cp.ScalarAsync<long?>("SELECT live FROM user_live_sessions WHERE user_id = @userId", new { userId }) ?? 0).ShouldBe(userCounted);
    }
}

public sealed class LiveSessionCounterTests_Sqlite(SqliteControlPlane cp) : LiveSessionCounterTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class LiveSessionCounterTests_Postgres(PostgresControlPlane cp) : LiveSessionCounterTests(cp), IClassFixture<PostgresControlPlane>;
