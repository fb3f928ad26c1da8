using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>When no agent can take a session, the 503 explains every agent; once one can, it gets the session.</summary>
public abstract class PlacementTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_503_names_why_each_agent_was_passed_over_then_an_online_agent_takes_the_session()
    {
        var admin = await cp.AdminClientAsync();
        // A template only the process runtime can start, so a docker agent is the wrong platform.
        var template = ControlPlaneFixture.Unique("proc-only-");
        await (await admin.PostAsJsonAsync($"/api/v1/templates/{template}", new
        {
            displayName = "Process only",
            defaultResources = new { cpu = "250m", memory = "128Mi" },
            stream = new { protocol = "vnc", port = 5900 },
            process = new { command = "xterm" },
        }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);

        var (_, ownerId, ownerName) = await cp.QuickUserAsync("filler", maxSessions: 10);
        await cp.InsertAgentAsync("a-offline", status: "offline");
        await cp.InsertAgentAsync("b-draining", draining: true);
        await cp.InsertAgentAsync("c-full", maxSessions: 2);
        await cp.InsertSessionAsync($"{ownerName}-xterm-fulla", ownerId, ownerName, "running", "c-full");
        await cp.InsertSessionAsync($"{ownerName}-xterm-fullb", ownerId, ownerName, "starting", "c-full");
        await cp.InsertSessionAsync($"{ownerName}-xterm-fullc", ownerId, ownerName, "terminated", "c-full"); // not live: does not count
        await cp.InsertAgentAsync("d-docker", platform: "docker");

        var (client, _, _) = await cp.QuickUserAsync("placed");
        var error = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template }, Ct)).ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
        error.GetProperty("error").GetString().ShouldBe("No agents available");
        var reasons = error.GetProperty("reasons").EnumerateArray()
            .ToDictionary(r => r.GetProperty("agentId").GetString()!, r => r.GetProperty("reason").GetString()!);
        reasons.Count.ShouldBe(4);
        reasons["a-offline"].ShouldBe("offline");
        reasons["b-draining"].ShouldBe("draining");
        reasons["c-full"].ShouldBe("full: 2/2 sessions, its registered maximum");
        reasons["d-docker"].ShouldBe($"platform docker cannot run template {template}");
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands")).ShouldBe(0);

        // The built-in xterm has a docker image, so the docker agent can take it.
        var onDocker = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        onDocker.GetProperty("agentId").GetString().ShouldBe("d-docker");

        await cp.InsertAgentAsync("e-online");
        var created = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        created.GetProperty("state").GetString().ShouldBe("pending");
        created.GetProperty("agentId").GetString().ShouldBe("e-online");
        var id = created.GetProperty("id").GetString()!;
        (await cp.ScalarAsync<long>(
            "SELECT COUNT(*) FROM agent_commands WHERE session_id = @id AND type = 'session.start' AND state = 'pending' AND agent_id = 'e-online'",
            new { id })).ShouldBe(1);
    }
}

public sealed class PlacementTests_Sqlite(SqliteControlPlane cp) : PlacementTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class PlacementTests_Postgres(PostgresControlPlane cp) : PlacementTests(cp), IClassFixture<PostgresControlPlane>;
