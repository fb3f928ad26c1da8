using System.Net;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// A body the endpoint cannot bind is answered in the API's own terms: the field by its JSON path, what it takes, and
/// where malformed JSON stopped; never the serializer's .NET type names (HttpAssertions checks that for every error).
/// </summary>
public abstract class BodyErrorMessageTests(ControlPlaneFixture cp)
{
    [Theory]
    [InlineData("/api/v1/sessions", """{"template":"xterm","cpu":"1"}""",
        "'cpu' is not a field of this request; it takes template, user, resources and persistentHome.", "cpu")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","resources":{"gpu":"1"}}""",
        "'resources.gpu' is not a field of this request; it takes cpu and memory.", "resources.gpu")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","resources":{"cpu":1}}""", "'resources.cpu' must be a string.", "resources.cpu")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","resources":[]}""", "'resources' must be a JSON object.", "resources")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","persistentHome":"yes"}""", "'persistentHome' must be true, false or null.", "persistentHome")]
    [InlineData("/api/v1/sessions", """[]""", "The request body must be a JSON object with the fields template, user, resources and persistentHome.", null)]
    [InlineData("/api/v1/sessions", """{"template":"xterm",""",
        "The request body is not valid JSON: Expected start of a property name or value, but instead reached end of data (line 1, byte 20).", null)]
    [InlineData("/api/v1/users", """{"username":"alice","password":"long-enough","maxSessions":"many"}""", "'maxSessions' must be a whole number or null.", "maxSessions")]
    [InlineData("/api/v1/users", """{"username":"alice","password":"long-enough","isAdmin":true}""",
        "'isAdmin' is not a field of this request; it takes username, password, role and maxSessions.", "isAdmin")]
    // A field given twice is refused, not "the last one wins"; a number sent as text is refused as the wrong kind.
    [InlineData("/api/v1/users", """{"username":"alice","password":"long-enough","role":"user","role":"admin"}""",
        "'role' appears more than once in this request.", "role")]
    [InlineData("/api/v1/agents", """{"agentId":"w1","agentId":"w2"}""", "'agentId' appears more than once in this request.", "agentId")]
    [InlineData("/api/v1/agents", """{"agentId":"w1","AgentId":"w2"}""", "'agentId' appears more than once in this request.", "agentId")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","resources":{"cpu":"1","memory":"1Gi","cpu":"64"}}""",
        "'resources.cpu' appears more than once in this request.", "resources.cpu")]
    [InlineData("/api/v1/agents", """{"agentId":"w1","maxSessions":"3"}""", "'maxSessions' must be a whole number or null.", "maxSessions")]
    // A string, but not text: reported as what it is, not as "must be a string".
    [InlineData("/api/v1/users", """{"username":"a\ud800b","password":"long-enough"}""",
        "'username' must be text without a lone surrogate (a \\uD800-\\uDFFF escape without its pair).", "username")]
    [InlineData("/api/v1/sessions", """{"template":"xterm","resources":{"cpu":"\udc00"}}""",
        "'resources.cpu' must be text without a lone surrogate (a \\uD800-\\uDFFF escape without its pair).", "resources.cpu")]
    public async Task A_body_that_cannot_be_bound_is_explained_in_the_apis_terms(string path, string body, string message, string? field)
    {
        var admin = await cp.AdminClientAsync();
        var error = await (await admin.PostRawAsync(path, body)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Invalid request");
        error.GetProperty("message").GetString().ShouldBe(message);
        if (field is null)
        {
            error.TryGetProperty("fields", out _).ShouldBeFalse();
            return;
        }
        var fields = error.GetProperty("fields").EnumerateObject().ToList();
        fields.Count.ShouldBe(1);
        fields[0].Name.ShouldBe(field);
        message.ShouldContain(fields[0].Value.GetString()!);
    }

    /// <summary>A PATCH that says role twice changes nothing: which one the admin meant is not for the server to guess.</summary>
    [Fact]
    public async Task A_patch_with_a_field_given_twice_is_refused_and_changes_nothing()
    {
        var admin = await cp.AdminClientAsync();
        var (_, userId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("twice-"));
        var patch = new HttpRequestMessage(HttpMethod.Patch, $"/api/v1/users/{userId}")
        {
            Content = new StringContent("""{"role":"user","role":"admin"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        var error = await (await admin.SendAsync(patch, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("message").GetString().ShouldBe("'role' appears more than once in this request.");
        error.GetProperty("fields").GetProperty("role").GetString().ShouldBe("appears more than once in this request");
        var users = await (await admin.GetAsync("/api/v1/users", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        users.EnumerateArray().Single(u => u.GetProperty("id").GetString() == userId).GetProperty("role").GetString().ShouldBe("user");
    }

    /// <summary>
    /// A query parameter given twice reached the handler as both values joined with a comma: the audit filtered by the user
    /// "a,b" and answered 200 with an empty page, a doubled <c>?force=true</c> was told it "must be true or false".
    /// </summary>
    [Theory]
    [InlineData("GET", "/api/v1/audit?user=admin&user=alice", "user")]
    [InlineData("GET", "/api/v1/audit?action=login.failed&limit=5&action=user.created", "action")]
    [InlineData("DELETE", "/api/v1/agents/no-such-agent?force=true&force=false", "force")]
    [InlineData("GET", "/api/v1/sessions?user=admin&user=", "user")]
    public async Task A_query_parameter_given_twice_is_refused_naming_it(string method, string url, string field)
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.SendAsync(new HttpRequestMessage(new HttpMethod(method), url), TestContext.Current.CancellationToken);
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Invalid request");
        error.GetProperty("message").GetString().ShouldBe($"'{field}' appears more than once in the query string.");
        error.GetProperty("fields").EnumerateObject().Select(f => (f.Name, f.Value.GetString())).ShouldBe([(field, "appears more than once in the query string")]);
    }

    [Fact]
    public async Task A_query_parameter_given_twice_does_not_tell_a_non_admin_or_an_unknown_path_anything_new()
    {
        var (user, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("twiceq-"));
        await (await user.GetAsync("/api/v1/audit?user=a&user=b", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await cp.Client().GetAsync("/api/v1/audit?user=a&user=b", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await (await user.GetAsync("/api/v1/no-such-thing?a=1&a=2", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Theory]
    [InlineData("application/yaml", "displayName: A\ndisplayName: B", "invalid YAML at line 2, column 1: 'displayName' appears more than once")]
    [InlineData("application/yaml", "displayName: X\nenv:\n  LANG: C\n  LANG: C.UTF-8", "invalid YAML at line 3, column 3: 'LANG' appears more than once")]
    [InlineData("application/json", """{"displayName":"A","displayName":"B"}""", "'displayName' appears more than once in this request.")]
    [InlineData("application/yaml", "proccess:\n  command: xterm", "invalid YAML at line 1, column 1: 'proccess' is not a template field here")]
    [InlineData("application/yaml", "displayName: {a: 1}", "invalid YAML at line 1, column 14: expected a text value here")]
    [InlineData("application/yaml", "displayName: X\nstream: [1, 2]", "invalid YAML at line 2, column 9: expected a mapping (key: value lines) here")]
    [InlineData("application/yaml", "displayName: X\nenv: 5", "invalid YAML at line 2, column 6: expected a mapping (key: value lines) here")]
    [InlineData("application/yaml", "displayName: X\nidleTimeoutMinutes: [1]", "invalid YAML at line 2, column 21: expected a whole number here")]
    [InlineData("application/json", """{"stream":{"port":"x"}}""", "'stream.port' must be a whole number.")]
    public async Task A_template_that_cannot_be_read_is_explained_in_the_authors_terms(string contentType, string body, string problem)
    {
        var admin = await cp.AdminClientAsync();
        var error = await (await admin.PostRawAsync($"/api/v1/templates/{ControlPlaneFixture.Unique("words-")}", body, contentType))
            .ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("message").GetString().ShouldBe($"The request body is not a valid template: {problem}");
    }
}

public sealed class BodyErrorMessageTests_Sqlite(SqliteControlPlane cp) : BodyErrorMessageTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class BodyErrorMessageTests_Postgres(PostgresControlPlane cp) : BodyErrorMessageTests(cp), IClassFixture<PostgresControlPlane>;
