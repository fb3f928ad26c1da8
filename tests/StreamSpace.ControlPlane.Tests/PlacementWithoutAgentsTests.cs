using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>No agent registered at all: the 503 says so and how to add one.</summary>
public abstract class PlacementWithoutAgentsTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Create_with_no_agents_is_503_with_empty_reasons_and_how_to_add_one()
    {
        var (client, _, _) = await cp.QuickUserAsync("lonely");
        var error = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken))
            .ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
        error.GetProperty("error").GetString().ShouldBe("No agents available");
        error.GetProperty("reasons").GetArrayLength().ShouldBe(0);
        var message = error.GetProperty("message").GetString()!;
        message.ShouldContain("No agent is registered");
        message.ShouldContain("POST /api/v1/agents");
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions")).ShouldBe(0);
    }
}

public sealed class PlacementWithoutAgentsTests_Sqlite(SqliteControlPlane cp) : PlacementWithoutAgentsTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class PlacementWithoutAgentsTests_Postgres(PostgresControlPlane cp) : PlacementWithoutAgentsTests(cp), IClassFixture<PostgresControlPlane>;
