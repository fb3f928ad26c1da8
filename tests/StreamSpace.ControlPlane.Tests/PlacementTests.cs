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
        reasons["c-full"].ShouldBe("full (2/2 sessions)");
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
