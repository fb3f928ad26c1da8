using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.ControlPlane.Tests.Streaming;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// PostgreSQL refuses the character U+0000 in text (SQLite keeps it). Wherever a client's text enters, NUL gets the
/// same 400 naming the field on both databases: never a 500, and never a failure of other callers' work.
/// </summary>
public abstract class NulCharacterTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Template = """
        "defaultResources":{"cpu":"500m","memory":"512Mi"},"stream":{"protocol":"vnc","port":5901},"process":{"command":"xterm"}
        """;

    private static async Task FieldIsRefusedAsync(HttpResponseMessage response, string field)
    {
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Validation failed");
        error.GetProperty("fields").GetProperty(field).GetString().ShouldBe("must not contain the character U+0000 (NUL)");
    }

    [Theory]
    [InlineData("/api/v1/sessions?user=admin%00", "user")]
    [InlineData("/api/v1/sessions?agent=%00", "agent")]
    [InlineData("/api/v1/sessions?after={cursor}", "after")]
    [InlineData("/api/v1/audit?user=admin%00", "user")]
    [InlineData("/api/v1/audit?action=login.failed%00", "action")]
    public async Task A_nul_in_a_query_filter_or_cursor_is_400(string url, string field)
    {
        // A cursor is base64url of "{ticks}.{id}": one whose id holds a NUL is not one this API wrote.
        url = url.Replace("{cursor}", SessionListPage.Cursor(DateTimeOffset.UtcNow, "admin-xterm-a\0b"), StringComparison.Ordinal);
        var admin = await cp.AdminClientAsync();
        var response = await admin.GetAsync(url, Ct);
        if (field == "after")
        {
            (await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("fields").GetProperty("after").GetString()
                .ShouldBe("is not a cursor from this API's Link header");
            return;
        }
        await FieldIsRefusedAsync(response, field);
    }

    [Theory]
    [InlineData("POST", "/api/v1/auth/login", """{"username":"admin\u0000","password":"x"}""", "application/json", "username")]
    [InlineData("POST", "/api/v1/sessions", """{"template":"xterm\u0000"}""", "application/json", "template")]
    [InlineData("POST", "/api/v1/sessions", """{"template":"xterm","user":"admin\u0000"}""", "application/json", "user")]
    [InlineData("POST", "/api/v1/templates/{new}", """{"displayName":"X\u0000",""" + Template + "}", "application/json", "displayName")]
    [InlineData("POST", "/api/v1/templates/{new}", """{"displayName":"X","category":"\u0000",""" + Template + "}", "application/json", "category")]
    [InlineData("PUT", "/api/v1/templates/xterm", """{"displayName":"X","env":{"FOO":"a\u0000"},""" + Template + "}", "application/json", "env.FOO")]
    [InlineData("POST", "/api/v1/templates/{new}",
        "displayName: X\ndefaultResources: {cpu: 500m, memory: 512Mi}\nstream: {protocol: vnc, port: 5901}\nprocess:\n  command: \"xterm\\0\"\n",
        "application/yaml", "process.command")]
    public async Task A_nul_in_a_body_is_400_naming_the_field(string method, string path, string body, string contentType, string field)
    {
        var admin = await cp.AdminClientAsync();
        using var request = new HttpRequestMessage(new HttpMethod(method), path.Replace("{new}", ControlPlaneFixture.Unique("nul-"), StringComparison.Ordinal))
        {
            Content = new StringContent(body, Encoding.UTF8, contentType),
        };
        await FieldIsRefusedAsync(await admin.SendAsync(request, Ct), field);
    }

    [Theory]
    [InlineData("POST", "/api/v1/users", """{"username":"bob\u0000","password":"long-enough-1"}""", "username")]
    [InlineData("PATCH", "/api/v1/users/{admin}", """{"role":"admin\u0000"}""", "role")]
    [InlineData("POST", "/api/v1/agents", """{"agentId":"worker\u0000"}""", "agentId")]
    [InlineData("POST", "/api/v1/agents", """{"agentId":"worker-nul","region":"eu\u0000"}""", "region")]
    public async Task Bodies_whose_fields_have_a_pattern_refuse_a_nul_by_it(string method, string path, string body, string field)
    {
        var admin = await cp.AdminClientAsync();
        using var request = new HttpRequestMessage(new HttpMethod(method), path.Replace("{admin}", await cp.AdminUserIdAsync(), StringComparison.Ordinal))
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        var error = await (await admin.SendAsync(request, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue(error.ToString());
    }

    [Theory]
    [InlineData("GET", "/api/v1/sessions/a%00b")]
    [InlineData("DELETE", "/api/v1/sessions/a%00b")]
    [InlineData("POST", "/api/v1/sessions/a%00b/viewer-ticket")]
    [InlineData("PATCH", "/api/v1/users/a%00b")]
    [InlineData("GET", "/api/v1/templates/a%00b")]
    [InlineData("GET", "/api/v1/agents/a%00b")]
    public async Task A_nul_in_a_path_id_is_refused_by_kestrel_before_any_handler(string method, string path)
    {
        var admin = await cp.AdminClientAsync();
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        (await admin.SendAsync(request, Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task A_nul_in_the_agent_id_header_is_refused_by_kestrel_before_the_token_lookup()
    {
        // HttpClient will not send a NUL in a header, so this is a raw request.
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(cp.BaseAddress.Host, cp.BaseAddress.Port, Ct);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.Latin1.GetBytes(
            "GET /api/v1/agents/connect HTTP/1.1\r\nHost: localhost\r\nX-StreamSpace-Agent-Id: worker\0x\r\nAuthorization: Bearer ssa_x\r\n\r\n"), Ct);
        var buffer = new byte[1024];
        var read = await stream.ReadAsync(buffer, Ct);
        Encoding.ASCII.GetString(buffer, 0, read).ShouldStartWith("HTTP/1.1 400 ");
    }

    [Fact]
    public async Task A_nul_in_a_viewer_ticket_is_just_an_invalid_ticket()
    {
        var session = await cp.CreateSessionAsync(await cp.AdminUserIdAsync());
        using var response = await cp.UpgradeRequestAsync($"/api/v1/sessions/{session}/vnc?ticket=a%00b");
        (await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("Invalid ticket");
    }

    [Theory]
    [InlineData("template")]
    [InlineData("user")]
    public async Task The_session_creator_answers_a_nul_itself_and_never_queues_it(string field)
    {
        // Behind the API's own validation: whoever calls the creator, such text never joins other callers' batch.
        var creator = cp.App.Services.GetRequiredService<SessionCreator>();
        var admin = new CurrentUser(await cp.AdminUserIdAsync(), "admin", Roles.Admin);
        var outcome = await creator.CreateAsync(new SessionCreateRequest(
            admin, field == "user" ? "admin\0" : "admin", field == "template" ? "xterm\0" : "xterm", null, null, false, null), Ct);
        outcome.Session.ShouldBeNull();
        outcome.Error!.StatusCode.ShouldBe((int)HttpStatusCode.BadRequest);
        outcome.Error.Value!.Fields![field].ShouldBe("must not contain the character U+0000 (NUL)");
    }

    [Fact]
    public async Task A_create_with_a_nul_in_its_template_fails_alone_among_concurrent_creates() =>
        await FieldIsRefusedAsync(await SharedCreateBatch.OneBadAmongGoodCreatesAsync(cp, "nulbatch", "xterm\0"), "template");
}

public sealed class NulCharacterTests_Sqlite(SqliteControlPlane cp) : NulCharacterTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class NulCharacterTests_Postgres(PostgresControlPlane cp) : NulCharacterTests(cp), IClassFixture<PostgresControlPlane>;
