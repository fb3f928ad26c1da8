using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class AuditApiTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Logins_are_listed_newest_first_with_all_fields()
    {
        var name = ControlPlaneFixture.Unique("aud");
        await cp.CreateUserAsync(name); // logs in once: login.succeeded
        await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = "wrong-password" }, TestContext.Current.CancellationToken);
        var admin = await cp.AdminClientAsync();

        var entries = await (await admin.GetAsync($"/api/v1/audit?user={name}", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        entries.ValueKind.ShouldBe(JsonValueKind.Array);
        entries.GetArrayLength().ShouldBe(2);
        entries[0].GetProperty("action").GetString().ShouldBe("login.failed");
        entries[1].GetProperty("action").GetString().ShouldBe("login.succeeded");
        entries[0].GetProperty("id").GetInt64().ShouldBeGreaterThan(entries[1].GetProperty("id").GetInt64());
        var first = entries[0];
        first.GetProperty("target").GetString().ShouldBe(name);
        first.GetProperty("clientIp").GetString().ShouldBe("127.0.0.1");
        first.GetProperty("detail").GetString().ShouldBe("bad credentials");
        first.GetProperty("at").GetDateTimeOffset().ShouldBeGreaterThan(DateTimeOffset.UtcNow.AddMinutes(-5));
        first.TryGetProperty("actor", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task Filters_by_action_and_limits()
    {
        var admin = await cp.AdminClientAsync();
        for (var i = 0; i < 3; i++)
            await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = ControlPlaneFixture.Unique("ghost"), password = "wrong-password" }, TestContext.Current.CancellationToken);

        var two = await (await admin.GetAsync("/api/v1/audit?action=login.failed&limit=2", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        two.GetArrayLength().ShouldBe(2);
        two.EnumerateArray().ShouldAllBe(e => e.GetProperty("action").GetString() == "login.failed");

        var all = await (await admin.GetAsync("/api/v1/audit", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        all.GetArrayLength().ShouldBeInRange(4, 100);
        var ids = all.EnumerateArray().Select(e => e.GetProperty("id").GetInt64()).ToList();
        ids.ShouldBe(ids.OrderByDescending(x => x).ToList());
    }

    [Fact]
    public async Task Hibernate_and_wake_are_audited_with_the_caller_and_the_owner()
    {
        var ct = TestContext.Current.CancellationToken;
        var agentId = ControlPlaneFixture.Unique("audit-agent-");
        await cp.InsertAgentAsync(agentId);
        var (owner, userId, username) = await cp.QuickUserAsync("frozen");
        var id = $"{username}-xterm-frozen";
        await cp.InsertSessionAsync(id, userId, username, "running", agentId);
        var admin = await cp.AdminClientAsync();

        // An admin freezes somebody else's desktop; the owner wakes it.
        await (await admin.PostAsync($"/api/v1/sessions/{id}/hibernate", null, ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await using (var conn = await cp.Db.OpenAsync(ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE sessions SET state = 'hibernated' WHERE id = @id", new { id }); // the agent's result
        await (await owner.PostAsync($"/api/v1/sessions/{id}/wake", null, ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        // Refused (already waking): nothing happened, nothing recorded.
        await (await owner.PostAsync($"/api/v1/sessions/{id}/wake", null, ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);

        var hibernated = await (await admin.GetAsync("/api/v1/audit?action=session.hibernated&limit=1000", ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var byAdmin = hibernated.EnumerateArray().Where(e => e.GetProperty("target").GetString() == id).ShouldHaveSingleItem();
        byAdmin.GetProperty("actor").GetString().ShouldBe("admin");
        byAdmin.GetProperty("detail").GetString().ShouldBe($"owner={username}");
        byAdmin.GetProperty("clientIp").GetString().ShouldBe("127.0.0.1");
        var woken = await (await admin.GetAsync("/api/v1/audit?action=session.woken&limit=1000", ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var byOwner = woken.EnumerateArray().Where(e => e.GetProperty("target").GetString() == id).ShouldHaveSingleItem();
        byOwner.GetProperty("actor").GetString().ShouldBe(username);
        byOwner.GetProperty("detail").GetString().ShouldBe($"owner={username}");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1001")]
    [InlineData("-5")]
    [InlineData("ten")]
    [InlineData("")]
    public async Task Bad_limit_is_400(string limit)
    {
        var admin = await cp.AdminClientAsync();
        var error = await (await admin.GetAsync($"/api/v1/audit?limit={limit}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty("limit", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task Older_entries_are_reached_page_by_page_through_the_Link_header()
    {
        var name = ControlPlaneFixture.Unique("pages");
        for (var i = 0; i < 5; i++)
            await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = "wrong-password" }, TestContext.Current.CancellationToken);
        var admin = await cp.AdminClientAsync();

        var seen = new List<long>();
        var url = $"/api/v1/audit?user={name}&limit=2";
        var pages = 0;
        while (url is not null)
        {
            using var response = await admin.GetAsync(url, TestContext.Current.CancellationToken);
            var page = await response.ShouldBeJsonAsync(HttpStatusCode.OK);
            page.GetArrayLength().ShouldBeInRange(1, 2);
            seen.AddRange(page.EnumerateArray().Select(e => e.GetProperty("id").GetInt64()));
            pages++;
            url = response.Headers.TryGetValues("Link", out var links)
                ? links.Single().Split(';')[0].Trim('<', '>', ' ')
                : null;
            url?.ShouldContain($"user={name}");
        }

        pages.ShouldBe(3);
        seen.Count.ShouldBe(5);
        seen.ShouldBe(seen.OrderByDescending(id => id).Distinct().ToList());
    }

    [Fact]
    public async Task Filtering_by_user_reads_that_users_entries_not_the_whole_log()
    {
        var ct = TestContext.Current.CancellationToken;
        var name = ControlPlaneFixture.Unique("audited");
        // The user's entries come first, as target (an admin acted on the account) and as actor; a long log about others follows.
        await using (var conn = await cp.Db.OpenAsync(ct))
        {
            var now = DateTimeOffset.UtcNow;
            await Dapper.SqlMapper.ExecuteAsync(conn,
                """
                INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@now, 'admin', 'user.updated', @name, NULL, NULL);
                INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@now, @name, 'session.created', 'a-session', NULL, NULL);
                INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@now, 'admin', 'user.disabled', @name, NULL, NULL);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @count)
                INSERT INTO audit_log (at, actor, action, target, detail, client_ip)
                SELECT @now, 'admin', 'user.updated', @others || i, NULL, NULL FROM n;
                """, new { now, name, others = ControlPlaneFixture.Unique("someone-else"), count = 20000 });
        }

        // Newest first, both halves of the filter, paged as before.
        var admin = await cp.AdminClientAsync();
        using var first = await admin.GetAsync($"/api/v1/audit?user={name}&limit=2", ct);
        var page = await first.ShouldBeJsonAsync(HttpStatusCode.OK);
        page.EnumerateArray().Select(e => e.GetProperty("action").GetString()).ShouldBe(["user.disabled", "session.created"]);
        var next = first.Headers.GetValues("Link").Single().Split(';')[0].Trim('<', '>', ' ');
        next.ShouldBe($"/api/v1/audit?user={name}&limit=2&before={page[1].GetProperty("id").GetInt64()}");
        var rest = await (await admin.GetAsync(next, ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        rest.EnumerateArray().Select(e => e.GetProperty("action").GetString()).ShouldBe(["user.updated"]);
        rest[0].GetProperty("target").GetString().ShouldBe(name);

        // Reading them costs what reading a handful of rows does, not a read of the whole log.
        (await QueryCost.MeasureAsync(cp, Audit.AuditApi.ListSql(byUser: true, byAction: false, before: false),
            new Dictionary<string, object> { ["user"] = name, ["fetch"] = Audit.AuditApi.DefaultLimit + 1 })).ShouldBeLessThan(QueryCost.HandfulOfRows(cp.Kind));
    }

    [Fact]
    public async Task Filtering_by_user_finds_what_others_did_to_their_sessions_and_not_entries_of_a_namesake_agent_or_template()
    {
        var ct = TestContext.Current.CancellationToken;
        var agentId = ControlPlaneFixture.Unique("audit-subject-");
        await cp.InsertAgentAsync(agentId, maxSessions: 1000);
        var (owner, userId, username) = await cp.QuickUserAsync("subject");
        var admin = await cp.AdminClientAsync();
        await (await admin.PatchAsJsonAsync($"/api/v1/users/{userId}", new { maxSessions = 6 }, ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        // An agent and a template named like the user: their entries have the username as target, yet are not about the user.
        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId = username }, ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        await using (var conn = await cp.Db.OpenAsync(ct))
            await Dapper.SqlMapper.ExecuteAsync(conn,
                "INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@now, 'admin', 'template.changed', @username, 'created', NULL)",
                new { now = DateTimeOffset.UtcNow, username });

        // What an admin does to the user's sessions: a session made for them, and one hibernated, woken and deleted.
        var made = (await (await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = username }, ct))
            .ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("id").GetString()!;
        var id = $"{username}-xterm-subject";
        await cp.InsertSessionAsync(id, userId, username, "running", agentId);
        await (await admin.PostAsync($"/api/v1/sessions/{id}/hibernate", null, ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await using (var conn = await cp.Db.OpenAsync(ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE sessions SET state = 'hibernated' WHERE id = @id", new { id }); // the agent's result
        await (await admin.PostAsync($"/api/v1/sessions/{id}/wake", null, ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        await (await admin.DeleteAsync($"/api/v1/sessions/{id}", ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
        // And what the user did themselves.
        await (await owner.DeleteAsync($"/api/v1/sessions/{made}", ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);

        var entries = await (await admin.GetAsync($"/api/v1/audit?user={username}", ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        entries.EnumerateArray().Select(e => (e.GetProperty("actor").GetString(), e.GetProperty("action").GetString(), e.GetProperty("target").GetString()))
            .ShouldBe([
                (username, "session.deleted", made),
                ("admin", "session.deleted", id),
                ("admin", "session.woken", id),
                ("admin", "session.hibernated", id),
                ("admin", "session.created", made),
                ("admin", "user.updated", username),
            ]);

        // Paged as before: following the Link headers walks the same entries.
        var walked = new List<long>();
        string? url = $"/api/v1/audit?user={username}&limit=3";
        while (url is not null)
        {
            using var response = await admin.GetAsync(url, ct);
            walked.AddRange((await response.ShouldBeJsonAsync(HttpStatusCode.OK)).EnumerateArray().Select(e => e.GetProperty("id").GetInt64()));
            url = response.Headers.TryGetValues("Link", out var link) ? link.Single().Split(';')[0].Trim('<', '>', ' ') : null;
        }
        walked.ShouldBe(entries.EnumerateArray().Select(e => e.GetProperty("id").GetInt64()).ToList());

        (await admin.DeleteAsync($"/api/v1/agents/{username}", ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("")]
    public async Task Bad_before_is_400(string before)
    {
        var admin = await cp.AdminClientAsync();
        var error = await (await admin.GetAsync($"/api/v1/audit?before={before}", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty("before", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task Plain_users_cannot_read_the_audit_log()
    {
        var (client, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("nosy"));
        await (await client.GetAsync("/api/v1/audit", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
    }
}

public sealed class AuditApiTests_Sqlite(SqliteControlPlane cp) : AuditApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class AuditApiTests_Postgres(PostgresControlPlane cp) : AuditApiTests(cp), IClassFixture<PostgresControlPlane>;
