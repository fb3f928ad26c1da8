using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>Least loaded first; ties go to the agent with more room, then by name.</summary>
public abstract class PlacementLoadTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Least_loaded_agent_is_chosen_first()
    {
        var (owner, ownerId, ownerName) = await cp.QuickUserAsync("load", maxSessions: 50);
        await cp.InsertAgentAsync("load-busy", maxSessions: 100);
        await cp.InsertAgentAsync("load-idle", maxSessions: 100);
        for (var i = 0; i < 3; i++)
            await cp.InsertSessionAsync($"{ownerName}-xterm-busy{i}a", ownerId, ownerName, "running", "load-busy");

        var placed = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var json = await (await owner.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
            placed.Add(json.GetProperty("agentId").GetString()!);
        }
        // idle has 0 vs busy 3: the first three go to idle, then they tie at 3 and the name breaks the tie.
        placed.ShouldBe(["load-idle", "load-idle", "load-idle", "load-busy"]);
    }
}

public sealed class PlacementLoadTests_Sqlite(SqliteControlPlane cp) : PlacementLoadTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class PlacementLoadTests_Postgres(PostgresControlPlane cp) : PlacementLoadTests(cp), IClassFixture<PostgresControlPlane>;
