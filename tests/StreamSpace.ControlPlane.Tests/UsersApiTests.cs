using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class UsersApiTests(ControlPlaneFixture cp)
{
    private const string Password = "a-good-password";

    private async Task<JsonElement> CreateViaApiAsync(HttpClient admin, string username, object? extra = null)
    {
        var body = new Dictionary<string, object?> { ["username"] = username, ["password"] = Password };
        if (extra is not null)
            foreach (var p in extra.GetType().GetProperties()) body[p.Name] = p.GetValue(extra);
        var response = await admin.PostAsJsonAsync("/api/v1/users", body, TestContext.Current.CancellationToken);
        return await response.ShouldBeJsonAsync(HttpStatusCode.Created);
    }

    [Fact]
    public async Task Me_returns_the_caller()
    {
        var name = ControlPlaneFixture.Unique("me");
        var (client, id, _) = await cp.CreateUserAsync(name, maxSessions: 3);
        var me = await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        me.GetProperty("id").GetString().ShouldBe(id);
        me.GetProperty("username").GetString().ShouldBe(name);
        me.GetProperty("role").GetString().ShouldBe("user");
        me.GetProperty("disabled").GetBoolean().ShouldBeFalse();
        me.GetProperty("maxSessions").GetInt32().ShouldBe(3);
        me.GetProperty("createdAt").GetDateTimeOffset().ShouldBeGreaterThan(DateTimeOffset.UtcNow.AddMinutes(-5));
        me.TryGetProperty("passwordHash", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task Admin_creates_a_user_with_defaults_who_can_then_log_in()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("new");
        var created = await CreateViaApiAsync(admin, name);
        created.GetProperty("username").GetString().ShouldBe(name);
        created.GetProperty("role").GetString().ShouldBe("user");
        created.GetProperty("maxSessions").GetInt32().ShouldBe(5); // StreamSpaceOptions.DefaultMaxSessions
        created.GetProperty("disabled").GetBoolean().ShouldBeFalse();
        var token = await cp.LoginAsync(name, Password);
        var me = await (await cp.Client(token).GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        me.GetProperty("id").GetString().ShouldBe(created.GetProperty("id").GetString());

        var list = await (await admin.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        list.ValueKind.ShouldBe(JsonValueKind.Array);
        list.EnumerateArray().Select(u => u.GetProperty("username").GetString()).ShouldContain(name);
        list.EnumerateArray().Select(u => u.GetProperty("username").GetString()).ShouldContain("admin");
    }

    [Fact]
    public async Task Admin_creates_an_admin_with_a_quota()
    {
        var admin = await cp.AdminClientAsync();
        var created = await CreateViaApiAsync(admin, ControlPlaneFixture.Unique("boss"), new { role = "admin", maxSessions = 1000 });
        created.GetProperty("role").GetString().ShouldBe("admin");
        created.GetProperty("maxSessions").GetInt32().ShouldBe(1000);
    }

    [Fact]
    public async Task Duplicate_username_is_409()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("dup");
        await CreateViaApiAsync(admin, name);
        var again = await admin.PostAsJsonAsync("/api/v1/users", new { username = name, password = "another-password" }, TestContext.Current.CancellationToken);
        await again.ShouldBeErrorAsync(HttpStatusCode.Conflict);
    }

    [Theory]
    [InlineData("""{"username":"Alice","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"a","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"-alice","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"al ice","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"alice\n","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"abcdefghijabcdefghijabcdefghijabc","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"system","password":"long-enough"}""", "username")]
    [InlineData("""{"username":"alice","password":"short"}""", "password")]
    [InlineData("""{"username":"alice"}""", "password")]
    [InlineData("""{"password":"long-enough"}""", "username")]
    [InlineData("""{"username":"alice","password":"long-enough","role":"root"}""", "role")]
    [InlineData("""{"username":"alice","password":"long-enough","maxSessions":-1}""", "maxSessions")]
    [InlineData("""{"username":"alice","password":"long-enough","maxSessions":1001}""", "maxSessions")]
    public async Task Invalid_new_user_is_400_naming_the_field(string body, string field)
    {
        var admin = await cp.AdminClientAsync();
        var response = await admin.PostRawAsync("/api/v1/users", body);
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue(error.ToString());
    }

    [Theory]
    [InlineData("""{"username":"alice","password":"long-enough","maxSessions":"many"}""")]
    [InlineData("""{"username":5,"password":"long-enough"}""")]
    [InlineData("""{"username":"alice","password":"long-enough","isAdmin":true}""")]
    [InlineData("""{"username":"alice","password":""")]
    [InlineData("""[1,2]""")]
    [InlineData("")]
    [InlineData("null")]
    public async Task Malformed_new_user_body_is_400(string body)
    {
        var admin = await cp.AdminClientAsync();
        var response = await admin.PostRawAsync("/api/v1/users", body);
        await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Huge_body_is_413()
    {
        var admin = await cp.AdminClientAsync();
        var huge = $$"""{"username":"alice","password":"{{new string('x', 1024 * 1024 + 10)}}"}""";
        var response = await admin.PostRawAsync("/api/v1/users", huge);
        await response.ShouldBeErrorAsync(HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task The_created_users_location_answers_that_user_as_the_list_shows_it_to_admins_only()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("loc");
        using var response = await admin.PostAsJsonAsync("/api/v1/users", new { username = name, password = Password, maxSessions = 2 },
            TestContext.Current.CancellationToken);
        var created = await response.ShouldBeJsonAsync(HttpStatusCode.Created);
        var id = created.GetProperty("id").GetString()!;
        response.Headers.Location!.OriginalString.ShouldBe($"/api/v1/users/{id}");

        var fetched = await (await admin.GetAsync(response.Headers.Location, TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var listed = (await (await admin.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .EnumerateArray().Single(u => u.GetProperty("id").GetString() == id);
        fetched.GetRawText().ShouldBe(listed.GetRawText());
        fetched.GetProperty("username").GetString().ShouldBe(name);
        fetched.GetProperty("maxSessions").GetInt32().ShouldBe(2);

        var (user, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("peek"));
        await (await user.GetAsync(response.Headers.Location, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        var missing = await (await admin.GetAsync("/api/v1/users/no-such-id", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        missing.GetProperty("message").GetString().ShouldBe("No user with id 'no-such-id'.");
        // /me is still the caller, not a user with id "me".
        (await (await user.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .GetProperty("role").GetString().ShouldBe("user");
    }

    [Fact]
    public async Task Patch_changes_quota_and_keeps_tokens()
    {
        var admin = await cp.AdminClientAsync();
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("quota"));
        var patched = await (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { maxSessions = 9 }, TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        patched.GetProperty("maxSessions").GetInt32().ShouldBe(9);
        (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Role_change_ends_existing_tokens_and_takes_effect_on_next_login()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("promo");
        var (client, id, _) = await cp.CreateUserAsync(name, password: Password);
        (await client.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);

        var patched = await (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { role = "admin" }, TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        patched.GetProperty("role").GetString().ShouldBe("admin");
        await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);

        var fresh = cp.Client(await cp.LoginAsync(name, Password));
        (await fresh.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Disabling_ends_tokens_and_blocks_login_and_enabling_restores_login()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("off");
        var (client, id, _) = await cp.CreateUserAsync(name, password: Password);
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await (await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = Password }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);

        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = false }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var token = await cp.LoginAsync(name, Password);
        (await cp.Client(token).GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Password_change_ends_tokens_and_the_new_password_works()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("pw");
        var (client, id, _) = await cp.CreateUserAsync(name, password: Password);
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { password = "the-new-password" }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await (await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = Password }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await cp.LoginAsync(name, "the-new-password");
    }

    [Fact]
    public async Task Admin_cannot_change_own_role_disable_or_delete_self()
    {
        var name = ControlPlaneFixture.Unique("selfadm");
        var (client, id, _) = await cp.CreateUserAsync(name, role: Roles.Admin);
        await (await client.PatchAsJsonAsync($"/api/v1/users/{id}", new { role = "user" }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await client.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await client.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        var me = await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        me.GetProperty("role").GetString().ShouldBe("admin");
        me.GetProperty("disabled").GetBoolean().ShouldBeFalse();
    }

    [Theory]
    [InlineData("""{}""")]
    [InlineData("""{"role":"superuser"}""")]
    [InlineData("""{"maxSessions":5000}""")]
    [InlineData("""{"password":"short"}""")]
    [InlineData("""{"disabled":"yes"}""")]
    [InlineData("""{"username":"renamed"}""")]
    [InlineData("""not json""")]
    public async Task Invalid_patch_is_400(string body)
    {
        var admin = await cp.AdminClientAsync();
        var (_, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("badpatch"));
        var response = await admin.PatchAsync($"/api/v1/users/{id}", new StringContent(body, System.Text.Encoding.UTF8, "application/json"), TestContext.Current.CancellationToken);
        await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Unknown_user_is_404_for_patch_and_delete()
    {
        var admin = await cp.AdminClientAsync();
        await (await admin.PatchAsJsonAsync("/api/v1/users/no-such-id", new { maxSessions = 1 }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await admin.DeleteAsync("/api/v1/users/no-such-id", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Delete_with_live_sessions_is_409_naming_the_count_and_deletes_once_they_ended()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("busy");
        var (client, id, _) = await cp.CreateUserAsync(name);
        var s1 = $"{name}-xterm-aaaaaa";
        var s2 = $"{name}-xterm-bbbbbb";
        var s3 = $"{name}-xterm-cccccc";
        await InsertSessionAsync(s1, id, name, "running");
        await InsertSessionAsync(s2, id, name, "pending");
        await InsertSessionAsync(s3, id, name, "terminated");

        var conflict = await (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        conflict.GetProperty("message").GetString()!.ShouldContain("2 live session");
        conflict.GetProperty("message").GetString()!.ShouldContain("terminate them first");

        // Sessions already being stopped need their agent, not the user's own terminate: the 409 says which they are.
        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'terminating' WHERE id = @s1", new { s1 });
        (await (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Conflict))
            .GetProperty("message").GetString()!.ShouldContain("2 live session(s), 1 of them being stopped; terminate the others first");
        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'terminating' WHERE id = @s2", new { s2 });
        (await (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Conflict))
            .GetProperty("message").GetString()!.ShouldContain("all being stopped: wait until their agents confirm the stops");

        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'terminated' WHERE user_id = @id", new { id });
        (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        var list = await (await admin.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        list.EnumerateArray().Select(u => u.GetProperty("id").GetString()).ShouldNotContain(id);
    }

    [Fact]
    public async Task User_changes_are_audited_without_the_password()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("audited");
        var id = (await CreateViaApiAsync(admin, name)).GetProperty("id").GetString();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { role = "admin" }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { maxSessions = 2, password = "secret-password-9" }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        var entries = await (await admin.GetAsync($"/api/v1/audit?user={name}", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var actions = entries.EnumerateArray().Select(e => e.GetProperty("action").GetString()).ToList();
        actions.ShouldBe(["user.deleted", "user.disabled", "user.updated", "user.role_changed", "user.created"]);
        entries.EnumerateArray().ShouldAllBe(e => e.GetProperty("actor").GetString() == "admin" && e.GetProperty("target").GetString() == name);
        entries.ToString().ShouldNotContain("secret-password-9");
        entries[3].GetProperty("detail").GetString().ShouldBe("user -> admin");
    }

    [Fact]
    public async Task Delete_queues_a_home_delete_to_each_agent_where_the_user_had_a_persistent_home()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("homes");
        var (_, id, _) = await cp.CreateUserAsync(name);
        var (_, otherId, otherName) = await cp.QuickUserAsync("neighbour");
        string[] agents = [.. Enumerable.Range(0, 4).Select(_ => ControlPlaneFixture.Unique("homeagent"))];
        foreach (var agent in agents) await cp.InsertAgentAsync(agent, AgentStatus.Offline);
        var deletedAgent = ControlPlaneFixture.Unique("goneagent"); // sessions name it, the agents table no longer does
        // Two persistent homes' sessions on agents[0] (one command), one on agents[1], a temporary home on agents[2], a
        // persistent session never placed, one on a deleted agent, and another user's persistent home on agents[3].
        await InsertSessionAsync($"{name}-xterm-aaaaaa", id, name, "terminated", agents[0], persistentHome: true);
        await InsertSessionAsync($"{name}-firefox-browser-bbbbbb", id, name, "failed", agents[0], persistentHome: true);
        await InsertSessionAsync($"{name}-xterm-cccccc", id, name, "terminated", agents[1], persistentHome: true);
        await InsertSessionAsync($"{name}-xterm-dddddd", id, name, "terminated", agents[2], persistentHome: false);
        await InsertSessionAsync($"{name}-xterm-eeeeee", id, name, "failed", null, persistentHome: true);
        await InsertSessionAsync($"{name}-xterm-ffffff", id, name, "terminated", deletedAgent, persistentHome: true);
        await InsertSessionAsync($"{otherName}-xterm-gggggg", otherId, otherName, "terminated", agents[3], persistentHome: true);
        // Refused while a session lives: nothing queued.
        await InsertSessionAsync($"{name}-xterm-hhhhhh", id, name, "hibernated", agents[1], persistentHome: true);
        await (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        (await HomeDeletesAsync(id)).ShouldBeEmpty();

        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await conn.ExecuteAsync("UPDATE sessions SET state = 'terminated' WHERE id = @s", new { s = $"{name}-xterm-hhhhhh" });
        (await admin.DeleteAsync($"/api/v1/users/{id}", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        var commands = await HomeDeletesAsync(id);
        commands.Select(c => c.AgentId).Order(StringComparer.Ordinal).ShouldBe(new[] { agents[0], agents[1] }.Order(StringComparer.Ordinal));
        foreach (var c in commands)
        {
            c.SessionId.ShouldBeNull();
            c.State.ShouldBe("pending"); // the agents are offline: it waits for them
            JsonDocument.Parse(c.Payload).RootElement.GetProperty("userId").GetString().ShouldBe(id);
            (c.ExpiresAt - c.CreatedAt).ShouldBe(TimeSpan.FromHours(24), "it waits as long as a command may for an agent that is away");
        }
        (await HomeDeletesForAgentsAsync(agents[2], agents[3], deletedAgent)).ShouldBe(0);
    }

    [Fact]
    public async Task Delete_while_an_agent_may_still_run_a_persistent_home_session_of_the_user_queues_its_home_delete_and_audits_why()
    {
        var ct = TestContext.Current.CancellationToken;
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("awayhome");
        var (owner, id, _) = await cp.CreateUserAsync(name);
        var agent = ControlPlaneFixture.Unique("awayagent");
        await cp.InsertAgentAsync(agent, AgentStatus.Offline);
        // The session is deleted while its agent is away; its stop expires, so it ends "terminated" without the agent's word.
        var sessionId = $"{name}-xterm-aaaaaa";
        await InsertSessionAsync(sessionId, id, name, "running", agent, persistentHome: true);
        await (await owner.DeleteAsync($"/api/v1/sessions/{sessionId}", ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await using (var conn = await cp.Db.OpenAsync(ct))
            await conn.ExecuteAsync("UPDATE agent_commands SET expires_at = @at WHERE session_id = @sessionId", new { at = DateTimeOffset.UtcNow, sessionId });
        await Hub.HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<string>(
            "SELECT state FROM sessions WHERE id = @sessionId", new { sessionId }) == "terminated", TimeSpan.FromSeconds(10), "the expired stop ended the session");

        // When the agent returns, reconciliation stops that session and the agent deletes the home once it has (it defers
        // a home.delete while a session uses the home), so nothing is refused; the audit entry says what is still out there.
        (await admin.DeleteAsync($"/api/v1/users/{id}", ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await HomeDeletesAsync(id)).Select(c => c.AgentId).ShouldBe([agent]);
        (await cp.ScalarAsync<string>("SELECT detail FROM audit_log WHERE action = 'user.deleted' AND target = @name", new { name }))
            .ShouldStartWith("1 persistent-home session(s) an agent had not confirmed stopping: that agent stops them when it is back");
    }

    /// <summary>
    /// A deleted user's home.delete waits for an agent that is away; deleting that agent would drop it for good (it never
    /// connects again), leaving the user's files on its host, so the agent delete refuses over it unless forced.
    /// </summary>
    [Fact]
    public async Task An_agent_that_still_owes_a_deleted_users_home_delete_is_deleted_only_when_forced_or_once_it_deleted_the_home()
    {
        var ct = TestContext.Current.CancellationToken;
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("owedhome");
        var (_, id, _) = await cp.CreateUserAsync(name);
        var agents = new List<(string AgentId, string Token)>();
        foreach (var prefix in new[] { "gonehost", "backhost" })
        {
            var agentId = ControlPlaneFixture.Unique(prefix);
            var token = (await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
                .GetProperty("token").GetString()!;
            agents.Add((agentId, token));
            await InsertSessionAsync($"{name}-xterm-{agentId[^6..]}", id, name, "terminated", agentId, persistentHome: true);
        }
        (await admin.DeleteAsync($"/api/v1/users/{id}", ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await HomeDeletesAsync(id)).Count.ShouldBe(2);

        var (gone, _) = agents[0];
        var refused = await (await admin.DeleteAsync($"/api/v1/agents/{gone}", ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        refused.GetProperty("pendingHomeDeletes").GetInt64().ShouldBe(1);
        refused.TryGetProperty("unconfirmedSessions", out _).ShouldBeFalse("no session of this agent ended without its word");
        refused.GetProperty("message").GetString().ShouldBe(
            $"Agent '{gone}' still holds the persistent home of 1 deleted user (their home.delete waits for it): deleting it now would leave " +
            $"those files on its host. Bring the agent online once so it deletes them, or delete with ?force=true (DELETE /api/v1/agents/{gone}?force=true).");
        await (await admin.GetAsync($"/api/v1/agents/{gone}", ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        (await admin.DeleteAsync($"/api/v1/agents/{gone}?force=true", ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await cp.ScalarAsync<string>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @gone", new { gone }))
            .ShouldBe("forced; 1 deleted user(s)' persistent home(s) it had not deleted left to it");

        // The other host comes back, is handed its home.delete and reports it done: nothing holds it any more.
        var (back, backToken) = agents[1];
        await (await admin.DeleteAsync($"/api/v1/agents/{back}", ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        await using (var agent = await Hub.ScriptedAgent.OnlineAsync(cp.BaseAddress, back, backToken))
        {
            var command = await agent.ExpectCommandAsync();
            command.Type.ShouldBe(Protocol.CommandTypes.HomeDelete);
            await agent.AckAsync(command.CommandId);
            await agent.ResultAsync(command.CommandId, success: true);
            await Hub.HubControlPlane.EventuallyAsync(async () => (await HomeDeletesAsync(id)).Single(c => c.AgentId == back).State == "succeeded",
                TimeSpan.FromSeconds(10), "the home.delete's result was applied");
        }
        (await admin.DeleteAsync($"/api/v1/agents/{back}", ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await cp.ScalarAsync<string?>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @back", new { back })).ShouldBeNull();
    }

    /// <summary>Admins (or a double click) deleting one user at once: one delete, one audit entry, one home.delete; the rest a JSON 404.</summary>
    [Fact]
    public async Task Concurrent_deletes_of_one_user_delete_it_once_and_answer_the_others_404()
    {
        var ct = TestContext.Current.CancellationToken;
        var admin = await cp.AdminClientAsync();
        var (second, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("admin2"), Roles.Admin);
        var name = ControlPlaneFixture.Unique("twicegone");
        var (_, id, _) = await cp.CreateUserAsync(name);
        var agent = ControlPlaneFixture.Unique("homeagent");
        await cp.InsertAgentAsync(agent, AgentStatus.Online);
        await InsertSessionAsync($"{name}-xterm-aaaaaa", id, name, "terminated", agent, persistentHome: true);

        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            using var response = await (i % 2 == 0 ? admin : second).DeleteAsync($"/api/v1/users/{id}", ct);
            if (response.StatusCode == HttpStatusCode.NoContent) return "deleted";
            (await response.ShouldBeErrorAsync(HttpStatusCode.NotFound)).GetProperty("message").GetString().ShouldBe($"No user with id '{id}'.");
            return "not found";
        }));
        answers.Count(a => a == "deleted").ShouldBe(1);
        (await HomeDeletesAsync(id)).Count.ShouldBe(1);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'user.deleted' AND target = @name", new { name })).ShouldBe(1);
    }

    private sealed record HomeDeleteRow(string AgentId, string? SessionId, string Payload, string State, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt);

    private async Task<List<HomeDeleteRow>> HomeDeletesAsync(string userId)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return (await conn.QueryAsync<HomeDeleteRow>(
            """
            SELECT agent_id AS AgentId, session_id AS SessionId, payload AS Payload, state AS State, created_at AS CreatedAt, expires_at AS ExpiresAt
            FROM agent_commands WHERE type = 'home.delete' AND payload LIKE @pattern
            """, new { pattern = $"%{userId}%" })).ToList();
    }

    private Task<long> HomeDeletesForAgentsAsync(params string[] agentIds) =>
        cp.ScalarAsync<long>($"SELECT COUNT(*) FROM agent_commands WHERE type = 'home.delete' AND {cp.Db.InList("agent_id", "ids")}", new { ids = agentIds });

    private async Task InsertSessionAsync(string id, string userId, string username, string state, string? agentId = null, bool persistentHome = false)
    {
        var now = DateTimeOffset.UtcNow;
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            INSERT INTO sessions (id, user_id, username, template, state, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@id, @userId, @username, 'xterm', @state, @agentId, '1', '1Gi', @home, @now, @now)
            """, new { id, userId, username, state, agentId, home = persistentHome, now });
    }
}

public sealed class UsersApiTests_Sqlite(SqliteControlPlane cp) : UsersApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class UsersApiTests_Postgres(PostgresControlPlane cp) : UsersApiTests(cp), IClassFixture<PostgresControlPlane>;
