using System.Net;
using System.Text.Json;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Web.Components.Pages.Admin;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Components;

/// <summary>Administration pages, against canned API JSON (component level).</summary>
public sealed class AdminTests_CannedApi() : ComponentTest("admin", admin: true)
{
    private string Agents(string status, int active, bool draining = false, string? sessionLimits = null, bool adminDraining = false, bool agentDraining = false) => Json(new[]
    {
        new
        {
            agentId = "local", status, lastHeartbeat = Now.AddSeconds(-4), platform = "process", region = "here",
            capacity = 4, activeSessions = active, version = "1.0.0", connectedAt = Now.AddMinutes(-10),
            draining = draining || adminDraining || agentDraining, adminDraining, agentDraining, sessionLimits,
        },
    });

    [Fact]
    public void Agents_show_status_heartbeat_age_capacity_version_and_platform_and_refresh_live()
    {
        Api.Answer("GET /api/v1/agents", Agents("online", 1))
           .Answer("GET /api/v1/agents", Agents("offline", 0));
        var cut = Render<AdminAgents>();
        var row = cut.Find("tr[data-agent='local']");
        row.QuerySelector(".badge")!.TextContent.ShouldBe("online");
        row.TextContent.ShouldContain("4 s ago");
        row.QuerySelector(".capacity")!.TextContent.ShouldBe("1 / 4");
        row.TextContent.ShouldContain("1.0.0");
        row.TextContent.ShouldContain("process");

        NextRefresh();

        cut.WaitForAssertion(() => cut.Find("tr[data-agent='local'] .badge").TextContent.ShouldBe("offline"));
    }

    [Fact]
    public void Agents_say_whether_they_enforce_session_limits_with_the_agents_reason_on_hover()
    {
        Api.Answer("GET /api/v1/agents", Agents("online", 0, sessionLimits: "not enforced: the agent does not run as root"))
           .Answer("GET /api/v1/agents", Agents("online", 0, sessionLimits: "enforced: a cgroup v1 per session (cpu quota, memory limit)"));
        var cut = Render<AdminAgents>();
        var limits = cut.Find("tr[data-agent='local'] .limits");
        limits.TextContent.ShouldBe("limits not enforced");
        limits.GetAttribute("title").ShouldBe("not enforced: the agent does not run as root");

        NextRefresh();
        cut.WaitForAssertion(() => cut.Find("tr[data-agent='local'] .limits").TextContent.ShouldBe("limits enforced"));
    }

    [Fact]
    public void Adding_an_agent_shows_its_token_once_with_the_command_to_start_it()
    {
        Api.Answer("GET /api/v1/agents", "[]")
           .Answer("POST /api/v1/agents", HttpStatusCode.Created, """{"agentId":"worker-2","token":"tok_secret_123"}""");
        var cut = Render<AdminAgents>();

        cut.Find("#agent-id").Change("worker-2");
        cut.Find("#agent-max").Change("6");
        cut.Find("form").Submit();

        cut.WaitForAssertion(() => cut.Find("#agent-token").GetAttribute("value").ShouldBe("tok_secret_123"));
        var command = cut.Find("#agent-command").TextContent;
        command.ShouldContain("STREAMSPACE_AGENT_ID=worker-2");
        command.ShouldContain("STREAMSPACE_AGENT_TOKEN=tok_secret_123");
        command.ShouldContain("STREAMSPACE_CONTROL_PLANE=http://localhost");
        var body = JsonDocument.Parse(Api.RequestsTo("POST /api/v1/agents").Single().Body!).RootElement;
        body.GetProperty("agentId").GetString().ShouldBe("worker-2");
        body.GetProperty("maxSessions").GetInt32().ShouldBe(6);
    }

    [Fact]
    public void The_start_command_gives_the_agent_the_capacity_and_region_it_was_registered_with()
    {
        // An agent started without them enforces its own defaults (10 sessions, region "default"), not the registered ones.
        Api.Answer("GET /api/v1/agents", "[]")
           .Answer("POST /api/v1/agents", HttpStatusCode.Created, """{"agentId":"worker-3","token":"tok_secret_456"}""")
           .Answer("POST /api/v1/agents", HttpStatusCode.Created, """{"agentId":"worker-4","token":"tok_secret_789"}""");
        var cut = Render<AdminAgents>();

        cut.Find("#agent-id").Change("worker-3");
        cut.Find("#agent-region").Change(" eu ");
        cut.Find("#agent-max").Change("20");
        cut.Find("form").Submit();

        cut.WaitForAssertion(() => cut.Find("#agent-token").GetAttribute("value").ShouldBe("tok_secret_456"));
        var lines = cut.Find("#agent-command").TextContent.Split('\n');
        lines.ShouldContain("STREAMSPACE_MAX_SESSIONS=20 \\");
        lines.ShouldContain("STREAMSPACE_REGION=eu \\");
        lines[^1].ShouldBe("STREAMSPACE_RUNTIME=process dotnet StreamSpace.Agent.dll");
        var body = JsonDocument.Parse(Api.RequestsTo("POST /api/v1/agents").Single().Body!).RootElement;
        body.GetProperty("region").GetString().ShouldBe("eu");
        body.GetProperty("maxSessions").GetInt32().ShouldBe(20);

        // What the form says after the agent was added is not what it was registered with.
        cut.Find("#agent-max").Change("7");
        cut.Find("#agent-command").TextContent.ShouldContain("STREAMSPACE_MAX_SESSIONS=20 ");

        // Left empty, the registration's defaults, spelled out.
        cut.Find("#agent-id").Change("worker-4");
        cut.Find("#agent-region").Change("");
        cut.Find("#agent-max").Change("");
        cut.Find("form").Submit();
        cut.WaitForAssertion(() => cut.Find("#agent-token").GetAttribute("value").ShouldBe("tok_secret_789"));
        var defaults = cut.Find("#agent-command").TextContent;
        defaults.ShouldContain("STREAMSPACE_MAX_SESSIONS=10 ");
        defaults.ShouldContain("STREAMSPACE_REGION=default ");
    }

    [Fact]
    public void Only_runtimes_an_agent_is_built_with_are_offered()
    {
        // An agent refuses STREAMSPACE_RUNTIME=docker or kubernetes ("not built yet"): a command with them could never start.
        Api.Answer("GET /api/v1/agents", "[]");
        var cut = Render<AdminAgents>();
        cut.FindAll("#agent-platform option").Select(o => o.GetAttribute("value")).ShouldBe(["process"]);
    }

    [Fact]
    public void Drain_asks_first_then_calls_the_api()
    {
        Api.Answer("GET /api/v1/agents", Agents("online", 0))
           .Answer("GET /api/v1/agents", Agents("online", 0, adminDraining: true))
           .Answer("POST /api/v1/agents/local/drain", HttpStatusCode.Accepted, "");
        var cut = Render<AdminAgents>();
        cut.Find("button[aria-label='Drain local']").Click();
        cut.Find(".confirm button.danger").Click();
        cut.WaitForAssertion(() => cut.Find("tr[data-agent='local']").TextContent.ShouldContain("draining"));
        Api.RequestsTo("POST /api/v1/agents/local/drain").Count.ShouldBe(1);
        cut.FindAll("button[aria-label='Drain local']").ShouldBeEmpty();
        cut.Find("button[aria-label='Resume local']");
    }

    [Fact]
    public void An_admin_drained_agent_offers_resume_which_lifts_the_drain()
    {
        Api.Answer("GET /api/v1/agents", Agents("online", 0, adminDraining: true))
           .Answer("GET /api/v1/agents", Agents("online", 0))
           .Answer("POST /api/v1/agents/local/undrain", HttpStatusCode.OK, "{}");
        var cut = Render<AdminAgents>();
        cut.Find("tr[data-agent='local'] .state-draining").GetAttribute("title").ShouldBe("drained by an admin until an admin resumes it");
        cut.FindAll("button[aria-label='Drain local']").ShouldBeEmpty();
        cut.Find("button[aria-label='Resume local']").Click();
        cut.Find(".confirm button.danger").Click();
        cut.WaitForAssertion(() => cut.FindAll("tr[data-agent='local'] .state-draining").ShouldBeEmpty());
        Api.RequestsTo("POST /api/v1/agents/local/undrain").Count.ShouldBe(1);
        cut.Find("button[aria-label='Drain local']");
    }

    [Fact]
    public void An_agent_draining_by_itself_shows_draining_and_offers_drain_not_resume()
    {
        // The agent's own drain (it is stopping) is not the admin's to lift; its next start clears it.
        Api.Answer("GET /api/v1/agents", Agents("online", 0, agentDraining: true));
        var stopping = Render<AdminAgents>();
        stopping.Find("tr[data-agent='local'] .state-draining").GetAttribute("title").ShouldBe("the agent is stopping; its next start clears this");
        stopping.FindAll("button[aria-label='Resume local']").ShouldBeEmpty();
        stopping.Find("button[aria-label='Drain local']");
    }

    [Fact]
    public void A_delete_refused_for_sessions_the_agent_has_not_confirmed_stopping_offers_delete_anyway_with_force()
    {
        // The agent's host is gone for good: it will never connect again to stop them, so only a forced delete ends it.
        var refusal = AgentsApi.UnconfirmedSessionsConflict("local", 1).Value!;
        Api.Answer("GET /api/v1/agents", Agents("offline", 0))
           .Answer("GET /api/v1/agents", Agents("offline", 0))
           .Answer("GET /api/v1/agents", "[]")
           .Answer("DELETE /api/v1/agents/local", HttpStatusCode.Conflict, Json(refusal))
           .Answer("DELETE /api/v1/agents/local?force=true", HttpStatusCode.NoContent, "");
        var cut = Render<AdminAgents>();
        cut.Find("button[aria-label='Delete local']").Click();
        cut.Find(".confirm button.danger").Click();

        cut.WaitForAssertion(() => cut.Find(".row-error .error").TextContent.ShouldContain(refusal.Message));
        Api.RequestsTo("DELETE /api/v1/agents/local").Single().Query.ShouldBeEmpty();
        cut.Find("tr[data-agent='local']");

        cut.Find(".row-error button[aria-label='Delete local anyway']").Click();
        cut.Find(".row-error .confirm").TextContent.ShouldContain("Delete anyway: sessions may keep running on its host.");
        cut.Find(".row-error .confirm button.danger").TextContent.ShouldBe("Yes, delete anyway");
        Api.RequestsTo("DELETE /api/v1/agents/local?force=true").ShouldBeEmpty(); // not before the second confirmation
        cut.Find(".row-error .confirm button.danger").Click();

        cut.WaitForAssertion(() => cut.FindAll("tr[data-agent='local']").ShouldBeEmpty());
        Api.RequestsTo("DELETE /api/v1/agents/local?force=true").Count.ShouldBe(1);
        cut.FindAll(".row-error").ShouldBeEmpty();
    }

    [Fact]
    public void A_delete_refused_for_deleted_users_homes_the_agent_still_holds_offers_delete_anyway_saying_so()
    {
        var refusal = AgentsApi.UnconfirmedSessionsConflict("local", 0, homeDeletes: 2).Value!;
        refusal.Message.ShouldContain("still holds the persistent homes of 2 deleted users");
        Api.Answer("GET /api/v1/agents", Agents("offline", 0))
           .Answer("GET /api/v1/agents", Agents("offline", 0))
           .Answer("DELETE /api/v1/agents/local", HttpStatusCode.Conflict, Json(refusal));
        var cut = Render<AdminAgents>();
        cut.Find("button[aria-label='Delete local']").Click();
        cut.Find(".confirm button.danger").Click();

        cut.WaitForAssertion(() => cut.Find(".row-error .error").TextContent.ShouldContain(refusal.Message));
        cut.Find(".row-error button[aria-label='Delete local anyway']").Click();
        cut.Find(".row-error .confirm").TextContent.ShouldContain("Delete anyway: deleted users' homes stay on its host.");
    }

    [Fact]
    public void A_delete_refused_for_live_sessions_offers_no_force()
    {
        // ?force=true never overrides live sessions: offering it would only earn the same refusal.
        var refusal = AgentsApi.LiveSessionsConflict("local", 2).Value!;
        Api.Answer("GET /api/v1/agents", Agents("online", 2))
           .Answer("DELETE /api/v1/agents/local", HttpStatusCode.Conflict, Json(refusal));
        var cut = Render<AdminAgents>();
        cut.Find("button[aria-label='Delete local']").Click();
        cut.Find(".confirm button.danger").Click();

        cut.WaitForAssertion(() => cut.Find(".row-error .error").TextContent.ShouldContain(refusal.Message));
        cut.FindAll(".row-error button").ShouldBeEmpty();
        cut.FindAll("button[aria-label='Delete local anyway']").ShouldBeEmpty();
        Api.RequestsTo("DELETE /api/v1/agents/local").Count.ShouldBe(1);
    }

    [Fact]
    public void All_sessions_are_filtered_by_the_api_so_the_filters_reach_the_whole_history()
    {
        const string users = """[{"id":"u1","username":"alice","role":"user"},{"id":"u2","username":"bob","role":"user"}]""";
        Api.Answer("GET /api/v1/users", users)
           .Answer("GET /api/v1/agents", Agents("online", 0))
           .Answer("GET /api/v1/sessions?limit=100", Json(new[]
           {
               Session("alice-xterm-aaaaaa", "running", user: "alice", agent: "local"),
               Session("alice-xterm-bbbbbb", "terminated", user: "alice", agent: "local"),
           }))
           .Answer("GET /api/v1/sessions?user=bob&limit=100", Json(new[] { Session("bob-xterm-cccccc", "running", user: "bob", agent: "local") }))
           .Answer("GET /api/v1/sessions?user=bob&state=failed&limit=100", "[]")
           .Answer("GET /api/v1/sessions?agent=local&limit=100", Json(new[] { Session("bob-xterm-cccccc", "running", user: "bob", agent: "local") }));
        var cut = Render<AdminSessions>();
        cut.FindAll("tr[data-session]").Count.ShouldBe(2); // admins also see history (terminated)

        // bob has no session on the first page, but he is a user, so he can be chosen.
        cut.FindAll("#f-user option").Select(o => o.GetAttribute("value")).ShouldBe(["", "alice", "bob"]);
        cut.Find("#f-user").Change("bob");
        cut.WaitForAssertion(() => cut.FindAll("tr[data-session]").Single().GetAttribute("data-session").ShouldBe("bob-xterm-cccccc"));
        cut.Find("#f-state").Change("failed");
        cut.WaitForAssertion(() => cut.FindAll("tr[data-session]").ShouldBeEmpty());
        cut.Find("#f-user").Change("");
        cut.Find("#f-state").Change("");
        cut.FindAll("#f-agent option").Select(o => o.GetAttribute("value")).ShouldBe(["", "local"]);
        cut.Find("#f-agent").Change("local");
        cut.WaitForAssertion(() => cut.FindAll("tr[data-session]").Single().GetAttribute("data-session").ShouldBe("bob-xterm-cccccc"));
        Api.RequestsTo("GET /api/v1/users").Count.ShouldBe(1); // the choices are loaded once per visit
    }

    [Fact]
    public void Older_sessions_are_shown_on_request()
    {
        var history = Enumerable.Range(0, 101).Select(i => Session($"alice-xterm-{i:000000}", i == 0 ? "running" : "terminated")).ToArray();
        Api.Answer("GET /api/v1/users", "[]").Answer("GET /api/v1/agents", "[]")
           .Answer("GET /api/v1/sessions?limit=100", Json(history[..100]), link: "</api/v1/sessions?limit=100&after=CURSOR>; rel=\"next\"")
           .Answer("GET /api/v1/sessions?limit=200", Json(history));
        var cut = Render<AdminSessions>();
        cut.Markup.ShouldContain("The newest 100 sessions");
        cut.FindAll("tr[data-session]").Count.ShouldBe(100);

        cut.FindAll("button").Single(b => b.TextContent == "Show 100 older sessions").Click();

        cut.WaitForAssertion(() => cut.FindAll("tr[data-session]").Count.ShouldBe(101));
        cut.Markup.ShouldContain("101 sessions");
        cut.FindAll("button").ShouldNotContain(b => b.TextContent.Contains("older sessions", StringComparison.Ordinal));
        // A full page answers what was asked for: its next page is only read when more are wanted.
        Api.RequestsTo("GET /api/v1/sessions?limit=100&after=CURSOR").ShouldBeEmpty();
    }

    [Fact]
    public void Users_are_created_and_a_refused_change_shows_the_api_message_on_its_row()
    {
        const string users = """[{"id":"u1","username":"admin","role":"admin","disabled":false,"maxSessions":5,"createdAt":"2026-11-29T10:00:00Z"}]""";
        Api.Answer("GET /api/v1/users", users)
           .Answer("POST /api/v1/users", HttpStatusCode.Created, """{"id":"u2","username":"alice","role":"user","disabled":false,"maxSessions":3}""")
           .Answer("PATCH /api/v1/users/u1", HttpStatusCode.Forbidden, """{"error":"Forbidden","message":"You cannot change your own role."}""");
        var cut = Render<AdminUsers>();

        cut.Find("#new-username").Change("alice");
        cut.Find("#new-password").Change("alice-password-1");
        cut.Find("#new-quota").Change("3");
        cut.Find("form").Submit();

        cut.WaitForAssertion(() => cut.Find(".notice").TextContent.ShouldContain("alice"));
        var body = JsonDocument.Parse(Api.RequestsTo("POST /api/v1/users").Single().Body!).RootElement;
        body.GetProperty("username").GetString().ShouldBe("alice");
        body.GetProperty("password").GetString().ShouldBe("alice-password-1");
        body.GetProperty("role").GetString().ShouldBe("user");
        body.GetProperty("maxSessions").GetInt32().ShouldBe(3);

        cut.Find("select[aria-label='Role of admin']").Change("user");
        cut.WaitForAssertion(() => cut.Find("tr.row-error").TextContent.ShouldContain("You cannot change your own role."));
        JsonDocument.Parse(Api.RequestsTo("PATCH /api/v1/users/u1").Single().Body!).RootElement.GetProperty("role").GetString().ShouldBe("user");
    }

    [Fact]
    public void A_second_submit_of_the_new_user_form_before_the_first_is_answered_sends_nothing_more()
    {
        // As the API answers a repeated create: the first is created, the second finds the name taken.
        Api.Answer("GET /api/v1/users", "[]")
           .Answer("POST /api/v1/users", HttpStatusCode.Created, """{"id":"u2","username":"bob","role":"user","disabled":false,"maxSessions":3}""")
           .Answer("POST /api/v1/users", HttpStatusCode.Conflict, """{"error":"Conflict","message":"A user named 'bob' already exists."}""");
        var answer = Api.Hold("POST /api/v1/users");
        var cut = Render<AdminUsers>();
        cut.Find("#new-username").Change("bob");
        cut.Find("#new-password").Change("bob-password-1");
        var form = cut.Find("form");

        form.Submit();
        cut.WaitForAssertion(() => Api.RequestsTo("POST /api/v1/users").Count.ShouldBe(1));
        form.Submit();
        answer();

        cut.WaitForAssertion(() => cut.Find(".notice").TextContent.ShouldContain("bob"));
        Api.RequestsTo("POST /api/v1/users").Count.ShouldBe(1);
        cut.FindAll(".panel .error").ShouldBeEmpty();
    }

    [Fact]
    public void Role_and_quota_changes_made_while_the_rows_change_is_in_flight_are_sent_after_it_the_latest_of_each()
    {
        // A number input's step arrow clicked three times fires change 6, 7, 8 before the disabling render reaches the
        // browser; the browser then shows 8 (and the role picked meanwhile), so that is what the server must end up with.
        static string Alice(int quota, string role) => $$"""[{"id":"u2","username":"alice","role":"{{role}}","disabled":false,"maxSessions":{{quota}}}]""";
        Api.Answer("GET /api/v1/users", Alice(5, "user"))
           .Answer("GET /api/v1/users", Alice(6, "user"))
           .Answer("GET /api/v1/users", Alice(8, "user"))
           .Answer("GET /api/v1/users", Alice(8, "admin"))
           .Answer("PATCH /api/v1/users/u2", """{"id":"u2","username":"alice","role":"user","disabled":false,"maxSessions":6}""");
        var answer = Api.Hold("PATCH /api/v1/users/u2");
        var cut = Render<AdminUsers>();
        var quota = cut.Find("input[aria-label='Session quota of alice']");
        var role = cut.Find("select[aria-label='Role of alice']");

        quota.Change("6");
        cut.WaitForAssertion(() => Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(1));
        quota.Change("7");
        quota.Change("8");
        role.Change("admin");
        Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(1); // one change per row at a time
        answer();

        cut.WaitForAssertion(() => Api.RequestsTo("GET /api/v1/users").Count.ShouldBe(4));
        var sent = Api.RequestsTo("PATCH /api/v1/users/u2").Select(r => r.Body!).ToList();
        sent.Count.ShouldBe(3, string.Join(" ", sent));
        JsonDocument.Parse(sent[0]).RootElement.GetProperty("maxSessions").GetInt32().ShouldBe(6);
        JsonDocument.Parse(sent[1]).RootElement.GetProperty("maxSessions").GetInt32().ShouldBe(8);
        JsonDocument.Parse(sent[2]).RootElement.GetProperty("role").GetString().ShouldBe("admin");
        cut.WaitForAssertion(() => cut.Find("input[aria-label='Session quota of alice']").GetAttribute("value").ShouldBe("8"));
        cut.Find("select[aria-label='Role of alice']").GetAttribute("value").ShouldBe("admin");
        cut.Find("input[aria-label='Session quota of alice']").HasAttribute("disabled").ShouldBeFalse();
        cut.FindAll("tr.row-error").ShouldBeEmpty();
    }

    [Fact]
    public void A_refused_change_keeps_its_reason_on_the_row_when_a_change_made_meanwhile_then_succeeds()
    {
        // Demoting the last admin is refused; the quota changed while that call was in flight goes through after it.
        static string Bob(int quota) => $$"""[{"id":"u2","username":"bob","role":"admin","disabled":false,"maxSessions":{{quota}}}]""";
        Api.Answer("GET /api/v1/users", Bob(5))
           .Answer("GET /api/v1/users", Bob(5))
           .Answer("GET /api/v1/users", Bob(7))
           .Answer("PATCH /api/v1/users/u2", HttpStatusCode.Conflict, """{"error":"Last admin","message":"At least one enabled admin must remain."}""")
           .Answer("PATCH /api/v1/users/u2", """{"id":"u2","username":"bob","role":"admin","disabled":false,"maxSessions":7}""");
        var answer = Api.Hold("PATCH /api/v1/users/u2");
        var cut = Render<AdminUsers>();

        cut.Find("select[aria-label='Role of bob']").Change("user");
        cut.WaitForAssertion(() => Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(1));
        cut.Find("input[aria-label='Session quota of bob']").Change("7");
        answer();

        cut.WaitForAssertion(() => Api.RequestsTo("GET /api/v1/users").Count.ShouldBe(3));
        Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(2);
        cut.WaitForAssertion(() => cut.Find("tr.row-error").TextContent.ShouldContain("At least one enabled admin must remain."));
        cut.Find("select[aria-label='Role of bob']").GetAttribute("value").ShouldBe("admin");
        cut.Find("input[aria-label='Session quota of bob']").GetAttribute("value").ShouldBe("7");
    }

    [Fact]
    public void A_change_made_while_the_rows_change_is_in_flight_that_the_server_then_holds_sends_nothing_more()
    {
        // Up then down: the browser shows 6 again, which the first change already set.
        Api.Answer("GET /api/v1/users", """[{"id":"u2","username":"alice","role":"user","disabled":false,"maxSessions":5}]""")
           .Answer("GET /api/v1/users", """[{"id":"u2","username":"alice","role":"user","disabled":false,"maxSessions":6}]""")
           .Answer("PATCH /api/v1/users/u2", """{"id":"u2","username":"alice","role":"user","disabled":false,"maxSessions":6}""");
        var answer = Api.Hold("PATCH /api/v1/users/u2");
        var cut = Render<AdminUsers>();
        var quota = cut.Find("input[aria-label='Session quota of alice']");

        quota.Change("6");
        cut.WaitForAssertion(() => Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(1));
        quota.Change("7");
        quota.Change("6");
        answer();

        cut.WaitForAssertion(() => Api.RequestsTo("GET /api/v1/users").Count.ShouldBe(2));
        cut.WaitForAssertion(() => cut.Find("input[aria-label='Session quota of alice']").HasAttribute("disabled").ShouldBeFalse());
        Api.RequestsTo("PATCH /api/v1/users/u2").Count.ShouldBe(1);
        cut.Find("input[aria-label='Session quota of alice']").GetAttribute("value").ShouldBe("6");
    }

    [Fact]
    public void A_user_created_without_a_quota_gets_the_servers_default()
    {
        // No maxSessions in the request: the API applies StreamSpace__DefaultMaxSessions (the page cannot know it).
        Api.Answer("GET /api/v1/users", "[]")
           .Answer("POST /api/v1/users", HttpStatusCode.Created, """{"id":"u2","username":"bob","role":"user","disabled":false,"maxSessions":8}""");
        var cut = Render<AdminUsers>();
        cut.Find("#new-quota").GetAttribute("value").ShouldBeNullOrEmpty();

        cut.Find("#new-username").Change("bob");
        cut.Find("#new-password").Change("bob-password-1");
        cut.Find("form").Submit();

        cut.WaitForAssertion(() => cut.Find(".notice").TextContent.ShouldContain("bob"));
        var body = JsonDocument.Parse(Api.RequestsTo("POST /api/v1/users").Single().Body!).RootElement;
        body.TryGetProperty("maxSessions", out _).ShouldBeFalse(body.ToString());
        body.GetProperty("username").GetString().ShouldBe("bob");
    }

    [Fact]
    public void Template_yaml_validation_errors_are_shown_inline()
    {
        Api.Answer("GET /api/v1/templates", """[{"name":"xterm","displayName":"XTerm"}]""")
           .Answer("GET /api/v1/templates/xterm", """{"name":"xterm","displayName":"XTerm","defaultResources":{"cpu":"1","memory":"512Mi"},"process":{"command":"xterm"}}""")
           .Answer("PUT /api/v1/templates/xterm", HttpStatusCode.BadRequest,
               """{"error":"Validation failed","message":"The template is not valid.","fields":{"defaultResources.memory":"must be a quantity like 512Mi"}}""");
        var cut = Render<AdminTemplates>();

        cut.FindAll("ul.list button").Single().Click();
        cut.WaitForAssertion(() => cut.Find("#yaml").GetAttribute("value")!.ShouldContain("memory: 512Mi"));
        cut.Find("#yaml").Change("name: xterm\ndefaultResources:\n  memory: lots\n");
        cut.FindAll("button").Single(b => b.TextContent == "Save").Click();

        cut.WaitForAssertion(() => cut.Find("#yaml-errors .error").TextContent.ShouldContain("defaultResources.memory"));
        cut.Find("#yaml-errors .error").TextContent.ShouldContain("must be a quantity like 512Mi");
        var put = Api.RequestsTo("PUT /api/v1/templates/xterm").Single();
        put.ContentType.ShouldBe("application/yaml");
        put.Body!.ShouldContain("memory: lots");
    }

    [Fact]
    public void An_existing_template_saved_unchanged_is_a_valid_template_without_the_catalogs_bookkeeping()
    {
        // The API's answer as GET /api/v1/templates/xterm gives it: the definition, then builtin/createdAt/updatedAt.
        Api.Answer("GET /api/v1/templates", """[{"name":"xterm","displayName":"XTerm"}]""")
           .Answer("GET /api/v1/templates/xterm", """
               {"name":"xterm","displayName":"XTerm","description":"A terminal: \"quoted\", # not a comment","category":"Development","icon":"terminal",
                "defaultResources":{"cpu":"250m","memory":"256Mi"},"stream":{"protocol":"vnc","port":5900},"home":{"mountPath":"/home/user"},
                "env":{"LANG":"C.UTF-8"},"idleTimeoutMinutes":null,"process":{"command":"xterm -fa Monospace -fs 11"},
                "docker":{"image":"streamspace/xterm:latest","command":"xterm"},"kubernetes":{"image":"streamspace/xterm:latest"},
                "builtin":true,"createdAt":"2026-11-29T10:00:00+00:00","updatedAt":"2026-11-29T10:00:00+00:00"}
               """)
           .Answer("PUT /api/v1/templates/xterm", "{}");
        var cut = Render<AdminTemplates>();

        cut.FindAll("ul.list button").Single().Click();
        cut.WaitForAssertion(() => cut.Find("#yaml").GetAttribute("value")!.ShouldContain("name: xterm"));
        cut.FindAll("button").Single(b => b.TextContent == "Save").Click();

        cut.WaitForAssertion(() => cut.Find(".notice").TextContent.ShouldBe("Saved."));
        var yaml = Api.RequestsTo("PUT /api/v1/templates/xterm").Single().Body!;
        // Parsed as the API parses a YAML body: an unknown key such as 'builtin' is refused there.
        StreamSpace.ControlPlane.Templates.TemplateYaml.TryParse(yaml, out var template, out var error).ShouldBeTrue(error);
        template!.Validate().IsValid.ShouldBeTrue(yaml);
        template.Description.ShouldBe("A terminal: \"quoted\", # not a comment");
        template.Env.ShouldBe(new Dictionary<string, string> { ["LANG"] = "C.UTF-8" });
        template.Process!.Command.ShouldBe("xterm -fa Monospace -fs 11");
        template.Docker!.Image.ShouldBe("streamspace/xterm:latest");
        template.Kubernetes!.Image.ShouldBe("streamspace/xterm:latest");
    }

    [Fact]
    public void A_new_template_saved_as_the_editor_starts_it_is_a_valid_template()
    {
        Api.Answer("GET /api/v1/templates", "[]")
           .Answer("POST /api/v1/templates/my-app", HttpStatusCode.Created, "{}");
        var cut = Render<AdminTemplates>();

        cut.Find("#new-template").Change("my-app");
        cut.FindAll("button").Single(b => b.TextContent == "New").Click();
        cut.FindAll("button").Single(b => b.TextContent == "Save").Click();

        cut.WaitForAssertion(() => cut.Find(".notice").TextContent.ShouldBe("Saved."));
        var yaml = Api.RequestsTo("POST /api/v1/templates/my-app").Single().Body!;
        StreamSpace.ControlPlane.Templates.TemplateYaml.TryParse(yaml, out var template, out var error).ShouldBeTrue(error);
        template!.Validate().IsValid.ShouldBeTrue(yaml);
        template.Name.ShouldBe("my-app");
        template.Process!.Command.ShouldBe("xterm");
    }

    [Fact]
    public void Audit_log_filters_by_user_and_action()
    {
        Api.Answer("GET /api/v1/audit", """[{"id":1,"at":"2026-11-29T11:00:00Z","actor":"admin","action":"user.created","target":"alice","detail":null,"clientIp":"127.0.0.1"}]""");
        var cut = Render<AdminAudit>();
        cut.Find("table.audit tbody tr").TextContent.ShouldContain("user.created");

        cut.Find("#a-user").Change("admin");
        cut.Find("#a-action").Change("user.created");
        cut.Find("form").Submit();

        cut.WaitForAssertion(() => Api.RequestsTo("GET /api/v1/audit").Count.ShouldBe(2));
        Api.RequestsTo("GET /api/v1/audit")[0].Query.ShouldBe("?limit=200");
        Api.RequestsTo("GET /api/v1/audit")[1].Query.ShouldBe("?user=admin&action=user.created&limit=200");
    }

    [Fact]
    public void Audit_log_asks_the_api_for_the_configured_page_size_within_its_maximum()
    {
        // The API answers 100 entries unless asked for more (at most 1000): without a limit the page never showed more.
        UiOptions.AuditPageSize = 300;
        Api.Answer("GET /api/v1/audit", "[]");
        Render<AdminAudit>();
        Api.RequestsTo("GET /api/v1/audit").Single().Query.ShouldBe("?limit=300");
    }

    [Theory]
    [InlineData(1000, null)]
    [InlineData(1001, "StreamSpace__Web__AuditPageSize must be between 1 and 1000")]
    [InlineData(0, "StreamSpace__Web__AuditPageSize must be between 1 and 1000")]
    public void The_audit_page_size_is_validated_against_the_apis_largest_limit(int size, string? error) =>
        new StreamSpace.ControlPlane.Web.WebUiOptions { AuditPageSize = size }.Validate().ShouldBe(error);
}
