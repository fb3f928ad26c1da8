using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>Session creation, visibility and lifecycle requests, with one online agent of ample capacity.</summary>
public abstract class SessionsApiTests(ControlPlaneFixture cp)
{
    private const string Agent = "sessions-agent";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Refreshed by every test: the hub's silence sweeper would otherwise mark it offline after 30 s.</summary>
    private Task AgentOnlineAsync() => cp.InsertAgentAsync(Agent, maxSessions: 1000);

    [Fact]
    public async Task Create_returns_a_pending_session_on_an_agent_with_one_start_command()
    {
        await AgentOnlineAsync();
        var (client, _, username) = await cp.QuickUserAsync("alice");

        var json = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);

        var id = json.GetProperty("id").GetString()!;
        id.ShouldMatch($"^{username}-xterm-[a-z]{{6}}$");
        json.GetProperty("name").GetString().ShouldBe(id);
        json.GetProperty("user").GetString().ShouldBe(username);
        json.GetProperty("template").GetString().ShouldBe("xterm");
        json.GetProperty("state").GetString().ShouldBe("pending");
        json.GetProperty("agentId").GetString().ShouldBe(Agent);
        json.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe("250m");
        json.GetProperty("resources").GetProperty("memory").GetString().ShouldBe("256Mi");
        json.GetProperty("persistentHome").GetBoolean().ShouldBeFalse();
        json.GetProperty("stateReason").ValueKind.ShouldBe(JsonValueKind.Null);
        json.TryGetProperty("createdAt", out _).ShouldBeTrue();
        json.TryGetProperty("updatedAt", out _).ShouldBeTrue();
        json.TryGetProperty("lastActivityAt", out _).ShouldBeTrue();

        await using var conn = await cp.Db.OpenAsync(Ct);
        var commands = (await conn.QueryAsync<(string Type, string State, string AgentId, string Payload)>(
            "SELECT type, state, agent_id, payload FROM agent_commands WHERE session_id = @id", new { id })).ToList();
        commands.Count.ShouldBe(1);
        commands[0].Type.ShouldBe(CommandTypes.SessionStart);
        commands[0].State.ShouldBe("pending");
        commands[0].AgentId.ShouldBe(Agent);
        var args = JsonSerializer.Deserialize<SessionStartArgs>(commands[0].Payload, ProtocolJson.Options)!;
        args.SessionId.ShouldBe(id);
        args.User.ShouldBe(username);
        // The agent keys the session's account and home by the user id: a later user of the same name is somebody else.
        var owner = await conn.QuerySingleAsync<UserRecord>($"SELECT {UserRecord.Columns} FROM users WHERE username = @username", new { username });
        args.UserId.ShouldBe(owner.Id);
        // And when that user was created: a home an older agent kept under this name and left before then was somebody else's.
        args.UserCreatedAt.ShouldBe(owner.CreatedAt);
        args.Launch.ProcessCommand.ShouldBe("xterm -fa Monospace -fs 11");
        args.Resources.Memory.ShouldBe("256Mi");

        var audits = await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'session.created' AND target = @id", new { id });
        audits.ShouldBe(1);
    }

    [Fact]
    public async Task Create_takes_resources_and_persistent_home_from_the_request()
    {
        await AgentOnlineAsync();
        var (client, _, _) = await cp.QuickUserAsync("res");
        // Below firefox-browser's defaults (1 cpu, 2Gi): a user may always ask for less.
        var json = await (await client.PostAsJsonAsync("/api/v1/sessions",
            new { template = "firefox-browser", resources = new { cpu = "0.5", memory = "1Gi" }, persistentHome = true }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        json.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe("0.5");
        json.GetProperty("resources").GetProperty("memory").GetString().ShouldBe("1Gi");
        json.GetProperty("persistentHome").GetBoolean().ShouldBeTrue();

        var partial = await (await client.PostAsJsonAsync("/api/v1/sessions",
            new { template = "firefox-browser", resources = new { memory = "1536Mi" } }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        partial.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe("1");
        partial.GetProperty("resources").GetProperty("memory").GetString().ShouldBe("1536Mi");
    }

    [Fact]
    public async Task Resources_above_the_template_are_refused_naming_the_field_unless_an_admin_asks()
    {
        await AgentOnlineAsync();
        var (client, _, username) = await cp.QuickUserAsync("greedy");

        // xterm gives 250m and 256Mi: a plain user asking for more is refused before quota or placement, nothing written.
        async Task<JsonElement> RefusedAsync(object resources, params string[] fields)
        {
            var json = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", resources }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
            foreach (var field in fields)
            {
                json.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue($"fields should name {field}: {json}");
                json.GetProperty("message").GetString()!.ShouldContain($"'{field}'");
            }
            json.GetProperty("fields").EnumerateObject().Count().ShouldBe(fields.Length, json.ToString());
            json.GetProperty("message").GetString()!.ShouldContain("only an admin may ask for more");
            return json;
        }

        var memory = await RefusedAsync(new { cpu = "64", memory = "256Gi" }, "resources.cpu", "resources.memory");
        memory.GetProperty("message").GetString()!.ShouldContain("'resources.memory' 256Gi is above the template's 256Mi");
        memory.GetProperty("message").GetString()!.ShouldContain("'resources.cpu' 64 is above the template's 250m");
        await RefusedAsync(new { cpu = "251m" }, "resources.cpu");
        await RefusedAsync(new { cpu = "0.3" }, "resources.cpu");
        await RefusedAsync(new { memory = "257Mi" }, "resources.memory");
        await RefusedAsync(new { cpu = "100m", memory = "1Gi" }, "resources.memory");
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE username = @username", new { username })).ShouldBe(0);

        // At the template's values (compared by value, not text) and below: taken, and stored as given.
        foreach (var (cpu, mem) in new[] { ("0.25", "0.25Gi"), ("250m", "268435456"), ("100m", "128Mi") })
        {
            var json = await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", resources = new { cpu, memory = mem } }, Ct))
                .ShouldBeJsonAsync(HttpStatusCode.Created);
            json.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe(cpu);
            json.GetProperty("resources").GetProperty("memory").GetString().ShouldBe(mem);
        }

        // An admin may ask for more, for their own session or somebody else's.
        var (admin, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("bigadmin"), Roles.Admin);
        foreach (var body in new object[] { new { template = "xterm", resources = new { cpu = "2", memory = "4Gi" } },
                     new { template = "xterm", user = username, resources = new { cpu = "2", memory = "4Gi" } } })
        {
            var json = await (await admin.PostAsJsonAsync("/api/v1/sessions", body, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
            json.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe("2");
            json.GetProperty("resources").GetProperty("memory").GetString().ShouldBe("4Gi");
        }
    }

    [Fact]
    public async Task Bad_create_bodies_are_4xx_naming_the_field()
    {
        await AgentOnlineAsync();
        var (client, _, _) = await cp.QuickUserAsync("bad");

        async Task ExpectFieldAsync(object body, string field)
        {
            var json = await (await client.PostAsJsonAsync("/api/v1/sessions", body, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
            json.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue($"fields should name {field}: {json}");
        }

        await ExpectFieldAsync(new { }, "template");
        await ExpectFieldAsync(new { template = "" }, "template");
        await ExpectFieldAsync(new { template = "no-such-template" }, "template");
        await ExpectFieldAsync(new { template = "xterm", resources = new { cpu = "lots" } }, "resources.cpu");
        await ExpectFieldAsync(new { template = "xterm", resources = new { cpu = "0" } }, "resources.cpu");
        await ExpectFieldAsync(new { template = "xterm", resources = new { cpu = "100" } }, "resources.cpu");
        await ExpectFieldAsync(new { template = "xterm", resources = new { memory = "-1Gi" } }, "resources.memory");
        await ExpectFieldAsync(new { template = "xterm", resources = new { memory = "1Ti" } }, "resources.memory");
        await ExpectFieldAsync(new { template = "xterm", user = "" }, "user");

        foreach (var raw in new[]
                 {
                     "{not json", "[]", "null", "", """{"template": 5}""", """{"template": "xterm", "persistentHome": "yes"}""",
                     """{"template": "xterm", "surprise": 1}""", """{"template": "xterm", "resources": {"cpu": "1", "gpu": 1}}""",
                     """{"template": "xterm", "resources": "big"}""",
                 })
        {
            var response = await client.PostAsync("/api/v1/sessions", new StringContent(raw, System.Text.Encoding.UTF8, "application/json"), Ct);
            await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        }

        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE username LIKE 'bad%'")).ShouldBe(0);
    }

    [Fact]
    public async Task Users_create_only_for_themselves_admins_for_anyone()
    {
        await AgentOnlineAsync();
        var (alice, _, _) = await cp.QuickUserAsync("self");
        var (_, _, bob) = await cp.QuickUserAsync("other");
        await (await alice.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = bob }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);

        var admin = await cp.AdminClientAsync();
        var json = await (await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = bob }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        json.GetProperty("user").GetString().ShouldBe(bob);

        var unknown = await (await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = "nobody-at-all" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        unknown.GetProperty("fields").TryGetProperty("user", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task Users_see_only_their_own_sessions_admins_see_all_with_filters()
    {
        await AgentOnlineAsync();
        var admin = await cp.AdminClientAsync();
        var adminSession = (await (await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("id").GetString()!;
        var (carol, _, carolName) = await cp.QuickUserAsync("carol");
        var carolSession = (await (await carol.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("id").GetString()!;

        // Another user's session does not exist for carol: 404 on every verb.
        await (await carol.GetAsync($"/api/v1/sessions/{adminSession}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await carol.DeleteAsync($"/api/v1/sessions/{adminSession}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await carol.PostAsync($"/api/v1/sessions/{adminSession}/hibernate", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await carol.PostAsync($"/api/v1/sessions/{adminSession}/wake", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await carol.GetAsync("/api/v1/sessions/no-such-session", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);

        var own = await (await carol.GetAsync("/api/v1/sessions", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        own.EnumerateArray().Select(s => s.GetProperty("id").GetString()).ShouldBe([carolSession]);
        var widened = await (await carol.GetAsync("/api/v1/sessions?user=admin", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        widened.GetArrayLength().ShouldBe(0);
        // Empty filters are no filters (as on the audit log), for a user and an admin alike.
        (await (await carol.GetAsync("/api/v1/sessions?user=&agent=&state=&live=", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .EnumerateArray().Select(s => s.GetProperty("id").GetString()).ShouldBe([carolSession]);
        await (await carol.GetAsync($"/api/v1/sessions/{carolSession}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        var all = await (await admin.GetAsync("/api/v1/sessions", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var allIds = all.EnumerateArray().Select(s => s.GetProperty("id").GetString()).ToList();
        allIds.ShouldContain(adminSession);
        allIds.ShouldContain(carolSession);
        var unfiltered = await (await admin.GetAsync("/api/v1/sessions?user=&agent=&state=&live=", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        unfiltered.EnumerateArray().Select(s => s.GetProperty("id").GetString()).ShouldBe(allIds);
        var filtered = await (await admin.GetAsync($"/api/v1/sessions?user={carolName}&agent={Agent}&state=pending", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        filtered.EnumerateArray().Select(s => s.GetProperty("id").GetString()).ShouldBe([carolSession]);
        (await (await admin.GetAsync($"/api/v1/sessions?user={carolName}&state=running", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetArrayLength().ShouldBe(0);
        await (await admin.GetAsync("/api/v1/sessions?state=sleeping", Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.GetAsync($"/api/v1/sessions/{carolSession}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task The_list_pages_newest_first_with_a_next_link_and_filters_live_and_ended_sessions()
    {
        await AgentOnlineAsync();
        var (client, _, username) = await cp.QuickUserAsync("pager", maxSessions: 10);
        var ids = new List<string>();
        for (var i = 0; i < 7; i++)
            ids.Add((await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
                .GetProperty("id").GetString()!);
        // Two share one creation time (a group-committed batch does that): the id breaks the tie, never skipped or repeated.
        List<string> expected;
        await using (var conn = await cp.Db.OpenAsync(Ct))
        {
            var created = await conn.QuerySingleAsync<DateTimeOffset>("SELECT created_at FROM sessions WHERE id = @id", new { id = ids[3] });
            await conn.ExecuteAsync("UPDATE sessions SET created_at = @created WHERE id = @id", new { created, id = ids[4] });
            foreach (var ended in new[] { ids[1], ids[5] })
                await conn.ExecuteAsync("UPDATE sessions SET state = 'terminated' WHERE id = @ended", new { ended });
            expected = (await conn.QueryAsync<string>("SELECT id FROM sessions WHERE username = @username ORDER BY created_at DESC, id DESC", new { username })).AsList();
        }
        expected.Count.ShouldBe(7);

        // Pages of 3, following the Link header the API gives (relative to the control plane).
        var seen = new List<string>();
        var pages = 0;
        string? next = "/api/v1/sessions?limit=3";
        while (next is not null)
        {
            using var response = await client.GetAsync(next, Ct);
            var page = await response.ShouldBeJsonAsync(HttpStatusCode.OK);
            seen.AddRange(page.EnumerateArray().Select(e => e.GetProperty("id").GetString()!));
            pages++;
            next = response.Headers.TryGetValues("Link", out var links)
                ? System.Text.RegularExpressions.Regex.Match(links.Single(), "^<([^>]+)>; rel=\"next\"$").Groups[1].Value
                : null;
            if (next is not null) next.ShouldStartWith("/api/v1/sessions?limit=3&after=");
            if (next is not null) page.GetArrayLength().ShouldBe(3);
        }
        seen.ShouldBe(expected);
        pages.ShouldBe(3);

        // live=true: what still holds quota; live=false: the ended ones; both keep the filters in their next link.
        var live = await (await client.GetAsync("/api/v1/sessions?live=true", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        live.EnumerateArray().Select(e => e.GetProperty("id").GetString()).ShouldBe(expected.Where(id => id != ids[1] && id != ids[5]));
        using (var endedPage = await client.GetAsync("/api/v1/sessions?live=false&limit=1", Ct))
        {
            (await endedPage.ShouldBeJsonAsync(HttpStatusCode.OK)).EnumerateArray().Single().GetProperty("id").GetString().ShouldBe(ids[5]);
            endedPage.Headers.GetValues("Link").Single().ShouldStartWith("</api/v1/sessions?live=false&limit=1&after=");
        }
        // Another user's cursor widens nothing: the caller's own sessions only, as always.
        var (other, _, _) = await cp.QuickUserAsync("pager-other");
        using var firstPage = await client.GetAsync("/api/v1/sessions?limit=1", Ct);
        var cursorLink = firstPage.Headers.GetValues("Link").Single();
        var otherPage = await (await other.GetAsync(cursorLink[1..cursorLink.IndexOf('>')], Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        otherPage.GetArrayLength().ShouldBe(0);
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=501", "limit")]
    [InlineData("limit=ten", "limit")]
    [InlineData("limit=-1", "limit")]
    [InlineData("after=not-a-cursor", "after")]
    [InlineData("after=MTIzNDU", "after")]
    [InlineData("live=yes", "live")]
    [InlineData("state=sleeping", "state")]
    public async Task Bad_list_parameters_are_refused_with_the_field_named(string query, string field)
    {
        var (client, _, _) = await cp.QuickUserAsync("badlist");
        var error = await (await client.GetAsync("/api/v1/sessions?" + query, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue(error.ToString());
    }

    [Fact]
    public async Task Delete_moves_to_terminating_enqueues_one_stop_and_is_idempotent()
    {
        await AgentOnlineAsync();
        var (client, _, _) = await cp.QuickUserAsync("del");
        var id = (await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("id").GetString()!;

        var first = await (await client.DeleteAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        first.GetProperty("state").GetString().ShouldBe("terminating");
        var second = await (await client.DeleteAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        second.GetProperty("state").GetString().ShouldBe("terminating");

        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE session_id = @id AND type = 'session.stop'", new { id })).ShouldBe(1);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'session.deleted' AND target = @id", new { id })).ShouldBe(1);

        // Already ended sessions: 202, nothing enqueued.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'terminated' WHERE id = @id", new { id });
        var ended = await (await client.DeleteAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        ended.GetProperty("state").GetString().ShouldBe("terminated");
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE session_id = @id", new { id })).ShouldBe(2);
    }

    [Fact]
    public async Task A_deleted_session_keeps_its_reason_once_the_agent_stopped_it()
    {
        var admin = await cp.AdminClientAsync();
        var (agentId, token) = await cp.RegisterAgentAsync("stopper-");
        var (_, userId, username) = await cp.QuickUserAsync("ended");
        var confirmed = $"{username}-xterm-confrm";
        var vanished = $"{username}-xterm-vanish";
        await cp.InsertSessionAsync(confirmed, userId, username, "running", agentId);
        await cp.InsertSessionAsync(vanished, userId, username, "running", agentId);
        var agent = await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token,
        [
            new SessionInventoryItem { SessionId = confirmed, State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = vanished, State = ObservedStates.Running },
        ], heartbeat: false);
        try
        {
            // The agent reports the stop as it sees it, then the stop's result (no reason of its own).
            var deleted = await (await admin.DeleteAsync($"/api/v1/sessions/{confirmed}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
            deleted.GetProperty("stateReason").GetString().ShouldBe("deleted by admin");
            var stop = await agent.ExpectCommandAsync();
            stop.SessionId.ShouldBe(confirmed);
            await agent.AckAsync(stop.CommandId);
            await agent.StatusAsync(confirmed, ObservedStates.Stopped);
            await agent.ResultAsync(stop.CommandId, success: true);
            await HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE id = @id AND state = 'succeeded'",
                new { id = stop.CommandId }) == 1, TimeSpan.FromSeconds(10), "the stop's result applied");
            var ended = await (await admin.GetAsync($"/api/v1/sessions/{confirmed}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            ended.GetProperty("state").GetString().ShouldBe("terminated");
            ended.GetProperty("stateReason").GetString().ShouldBe("deleted by admin");

            // The agent goes down with the other stop unanswered and comes back without the session: reconciliation ends it.
            await (await admin.DeleteAsync($"/api/v1/sessions/{vanished}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
            (await agent.ExpectCommandAsync()).SessionId.ShouldBe(vanished);
            agent.Crash();
            await agent.DisposeAsync();
            agent = await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token, heartbeat: false);
            await HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<string>("SELECT state FROM sessions WHERE id = @vanished", new { vanished }) == "terminated",
                TimeSpan.FromSeconds(10), "reconciliation ends the session the agent no longer reports");
            var gone = await (await admin.GetAsync($"/api/v1/sessions/{vanished}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            gone.GetProperty("stateReason").GetString().ShouldBe("deleted by admin");
        }
        finally
        {
            await agent.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_hibernated_session_keeps_why_it_was_hibernated_until_it_is_woken()
    {
        var admin = await cp.AdminClientAsync();
        var agentId = ControlPlaneFixture.Unique("sleeper-");
        var token = (await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("token").GetString()!;
        var (_, userId, username) = await cp.QuickUserAsync("dozer");
        var id = $"{username}-xterm-dozing";
        await cp.InsertSessionAsync(id, userId, username, "running", agentId);
        await using var agent = await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token,
            [new SessionInventoryItem { SessionId = id, State = ObservedStates.Running }], heartbeat: false);

        // The agent reports the session as it sees it, then the hibernate's result (neither with a reason of its own).
        var hibernating = await (await admin.PostAsync($"/api/v1/sessions/{id}/hibernate", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        hibernating.GetProperty("stateReason").GetString().ShouldBe("hibernated by admin");
        var hibernate = await agent.ExpectCommandAsync();
        hibernate.Type.ShouldBe(CommandTypes.SessionHibernate);
        await agent.AckAsync(hibernate.CommandId);
        await agent.StatusAsync(id, ObservedStates.Hibernated);
        await agent.ResultAsync(hibernate.CommandId, success: true);
        await HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE id = @id AND state = 'succeeded'",
            new { id = hibernate.CommandId }) == 1, TimeSpan.FromSeconds(10), "the hibernate's result applied");
        var hibernated = await (await admin.GetAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        hibernated.GetProperty("state").GetString().ShouldBe("hibernated");
        hibernated.GetProperty("stateReason").GetString().ShouldBe("hibernated by admin");

        // A wake that succeeded leaves nothing to explain: a running session has no reason.
        await (await admin.PostAsync($"/api/v1/sessions/{id}/wake", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        var wake = await agent.ExpectCommandAsync();
        wake.Type.ShouldBe(CommandTypes.SessionWake);
        await agent.AckAsync(wake.CommandId);
        await agent.ResultAsync(wake.CommandId, success: true);
        await HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<string>("SELECT state FROM sessions WHERE id = @id", new { id }) == "running",
            TimeSpan.FromSeconds(10), "the wake's result applied");
        var woken = await (await admin.GetAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        woken.GetProperty("stateReason").ValueKind.ShouldBe(JsonValueKind.Null);
    }

    [Fact]
    public async Task Hibernate_and_wake_follow_the_state_machine()
    {
        await AgentOnlineAsync();
        var (client, _, _) = await cp.QuickUserAsync("sleep");
        var id = (await (await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
            .GetProperty("id").GetString()!;

        var early = await (await client.PostAsync($"/api/v1/sessions/{id}/hibernate", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        early.GetProperty("message").GetString()!.ShouldContain("pending");
        await (await client.PostAsync($"/api/v1/sessions/{id}/wake", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);

        // The hub would do this on the agent's result.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'running' WHERE id = @id", new { id });
        var hibernating = await (await client.PostAsync($"/api/v1/sessions/{id}/hibernate", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        hibernating.GetProperty("state").GetString().ShouldBe("hibernating");
        var again = await (await client.PostAsync($"/api/v1/sessions/{id}/hibernate", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        again.GetProperty("message").GetString()!.ShouldContain("hibernating");

        await using (var conn = await cp.Db.OpenAsync(Ct))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'hibernated' WHERE id = @id", new { id });
        var waking = await (await client.PostAsync($"/api/v1/sessions/{id}/wake", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        waking.GetProperty("state").GetString().ShouldBe("waking");

        var types = await cp.ScalarAsync<long>(
            "SELECT COUNT(*) FROM agent_commands WHERE session_id = @id AND type IN ('session.hibernate', 'session.wake') AND state = 'pending'", new { id });
        types.ShouldBe(2);
    }

    [Fact]
    public async Task Hibernate_and_wake_are_refused_while_the_agent_is_offline_naming_it()
    {
        var (agentId, token) = await cp.RegisterAgentAsync("sleepy-");
        var (client, userId, username) = await cp.QuickUserAsync("offline");
        var running = $"{username}-xterm-runnin";
        var hibernated = $"{username}-xterm-hibern";
        await cp.InsertSessionAsync(running, userId, username, "running", agentId);
        await cp.InsertSessionAsync(hibernated, userId, username, "hibernated", agentId);
        // What the agent reports at every hello, so reconciliation leaves both sessions as they are.
        SessionInventoryItem[] inventory =
        [
            new() { SessionId = running, State = ObservedStates.Running }, new() { SessionId = hibernated, State = ObservedStates.Hibernated },
        ];
        // The agent was connected and went away: its closed socket marks it offline.
        await (await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token, inventory, heartbeat: false)).DisposeAsync();
        await HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<string>("SELECT status FROM agents WHERE agent_id = @agentId", new { agentId }) == "offline",
            TimeSpan.FromSeconds(10), $"agent {agentId} offline after its socket closed");

        foreach (var (id, verb, state) in new[] { (running, "hibernate", "running"), (hibernated, "wake", "hibernated") })
        {
            var error = await (await client.PostAsync($"/api/v1/sessions/{id}/{verb}", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
            error.GetProperty("error").GetString().ShouldBe("Agent offline");
            error.GetProperty("message").GetString()!.ShouldContain($"agent '{agentId}', which is offline");
            (await cp.ScalarAsync<string>("SELECT state FROM sessions WHERE id = @id", new { id })).ShouldBe(state);
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agent_commands WHERE session_id = @id", new { id })).ShouldBe(0);
        }

        // Back online: the same request is taken.
        await using var back = await ScriptedAgent.OnlineAsync(cp.BaseAddress, agentId, token, inventory);
        var waking = await (await client.PostAsync($"/api/v1/sessions/{hibernated}/wake", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        waking.GetProperty("state").GetString().ShouldBe("waking");
        (await back.ExpectCommandAsync()).Type.ShouldBe(CommandTypes.SessionWake);
    }

    [Fact]
    public async Task Anonymous_callers_get_401()
    {
        await (await cp.Client().GetAsync("/api/v1/sessions", Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await (await cp.Client().PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }
}

public sealed class SessionsApiTests_Sqlite(SqliteControlPlane cp) : SessionsApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class SessionsApiTests_Postgres(PostgresControlPlane cp) : SessionsApiTests(cp), IClassFixture<PostgresControlPlane>;
