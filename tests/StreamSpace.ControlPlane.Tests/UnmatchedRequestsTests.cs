using System.Net;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class UnmatchedRequestsTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Unknown_path_is_a_json_404_even_without_credentials()
    {
        using var response = await cp.Client().GetAsync("/api/v1/no-such-thing");
        var json = await response.ShouldBeErrorAsync(HttpStatusCode.NotFound);
        json.GetProperty("message").GetString()!.ShouldContain("/api/v1/no-such-thing");
    }

    [Fact]
    public async Task Options_for_the_whole_server_names_the_root_in_its_405()
    {
        // "OPTIONS *" (the asterisk form of the request target) has an empty path; HttpClient does not send it, so raw.
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(cp.BaseAddress.Host, cp.BaseAddress.Port, TestContext.Current.CancellationToken);
        var stream = tcp.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes("OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"), TestContext.Current.CancellationToken);
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8);
        var response = await reader.ReadToEndAsync(TestContext.Current.CancellationToken);
        response.ShouldStartWith("HTTP/1.1 405 ");
        // The body may come chunked: the JSON object between its chunk-size lines.
        var body = System.Text.Json.JsonDocument.Parse(response[response.IndexOf('{')..(response.LastIndexOf('}') + 1)]).RootElement;
        body.GetProperty("message").GetString()!.ShouldStartWith("/ does not accept OPTIONS; it accepts ");
    }

    [Fact]
    public async Task Non_json_body_to_a_json_endpoint_is_415_not_404()
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.PostRawAsync("/api/v1/sessions", "template=xterm", "text/plain");
        await response.ShouldBeErrorAsync(HttpStatusCode.UnsupportedMediaType);
    }

    [Theory]
    [InlineData("application/json; charset=utf-8")]
    [InlineData("application/json; charset=UTF-8")]
    [InlineData("application/json; charset=\"utf-8\"")]
    [InlineData("application/json; charset=\"UTF-8\"; foo=bar")]
    [InlineData("application/json; charset=iso-8859-1")]
    public async Task Json_body_in_a_known_charset_is_read_even_when_the_charset_is_quoted(string contentType)
    {
        // The framework's JSON reader looked the charset up verbatim: a quoted "utf-8", which HTTP allows, was a 500.
        var admin = await cp.AdminClientAsync();
        var username = $"charset-{Guid.NewGuid():N}"[..20];
        using var response = await admin.PostAsync("/api/v1/users",
            WithContentType($$"""{"username":"{{username}}","password":"charset-password-1"}""", contentType), TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        response.StatusCode.ShouldBe(HttpStatusCode.Created, text);
        text.ShouldContain(username);
    }

    [Theory]
    [InlineData("application/json; charset=foo", "the charset 'foo', which the server does not know")]
    [InlineData("application/json; charset=\"foo\"", "the charset 'foo', which the server does not know")]
    [InlineData("application/json; charset=", "an empty charset")]
    [InlineData("application/json; charset=\"\"", "an empty charset")]
    public async Task Json_body_in_an_unknown_charset_is_415_naming_it(string contentType, string named)
    {
        var admin = await cp.AdminClientAsync();
        var users = await admin.GetStringAsync("/api/v1/users", TestContext.Current.CancellationToken);
        using var response = await admin.PostAsync("/api/v1/users",
            WithContentType("""{"username":"charset-refused","password":"charset-password-1"}""", contentType), TestContext.Current.CancellationToken);
        var json = await response.ShouldBeErrorAsync(HttpStatusCode.UnsupportedMediaType);
        json.GetProperty("message").GetString().ShouldBe($"The request's Content-Type names {named}; send the JSON body as UTF-8 (Content-Type: application/json).");
        (await admin.GetStringAsync("/api/v1/users", TestContext.Current.CancellationToken)).ShouldBe(users, "a refused body creates nothing");

        // Authorization still answers first: an anonymous caller learns nothing about the body.
        using var anonymous = await cp.Client().PostAsync("/api/v1/users",
            WithContentType("{}", contentType), TestContext.Current.CancellationToken);
        await anonymous.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    private static StringContent WithContentType(string body, string contentType)
    {
        var content = new StringContent(body);
        content.Headers.Remove("Content-Type");
        content.Headers.TryAddWithoutValidation("Content-Type", contentType).ShouldBeTrue();
        return content;
    }

    [Fact]
    public async Task Wrong_method_on_a_known_path_is_405_with_allow()
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.PutAsync("/api/v1/sessions", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"));
        await response.ShouldBeErrorAsync(HttpStatusCode.MethodNotAllowed);
        response.Content.Headers.Allow.ShouldContain("POST");
    }

    [Theory]
    [InlineData("/api/v1/x.json")]
    [InlineData("/api/v1/nope")]
    [InlineData("/api/v1/agents/worker.1/nothing-here")]
    [InlineData("/api/x.y/z.json")]
    public async Task Unknown_api_paths_are_the_same_json_404_for_anonymous_and_signed_in_callers(string path)
    {
        // The catch-all's {*path:nonfile} leaves out paths whose last segment has a dot: those were 401 to an anonymous
        // caller and the framework's generic 404 text to a signed-in one.
        var admin = await cp.AdminClientAsync();
        foreach (var client in new[] { cp.Client(), admin })
        {
            using var response = await client.GetAsync(path, TestContext.Current.CancellationToken);
            var json = await response.ShouldBeErrorAsync(HttpStatusCode.NotFound);
            json.GetProperty("error").GetString().ShouldBe("Not found");
            json.GetProperty("message").GetString().ShouldBe($"No route for GET {path}.");
        }
    }

    [Theory]
    [InlineData("worker1")]
    [InlineData("worker.1")]
    public async Task Wrong_method_on_an_agent_is_405_with_allow_whether_or_not_its_id_has_a_dot(string agentId)
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.PutAsync($"/api/v1/agents/{agentId}", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"),
            TestContext.Current.CancellationToken);
        await response.ShouldBeErrorAsync(HttpStatusCode.MethodNotAllowed);
        response.Content.Headers.Allow.Order().ShouldBe(["DELETE", "GET"]);
    }

    [Theory]
    [InlineData("/viewer")]
    [InlineData("/viewer/")]
    public async Task The_viewer_assets_folder_itself_is_a_json_404_not_a_binder_400(string path)
    {
        using var response = await cp.Client().GetAsync(path, TestContext.Current.CancellationToken);
        var json = await response.ShouldBeErrorAsync(HttpStatusCode.NotFound);
        json.GetProperty("message").GetString().ShouldBe("No viewer asset ''.");
    }
}

public sealed class UnmatchedRequestsTests_Sqlite(SqliteControlPlane cp) : UnmatchedRequestsTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class UnmatchedRequestsTests_Postgres(PostgresControlPlane cp) : UnmatchedRequestsTests(cp), IClassFixture<PostgresControlPlane>;
