using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.RegularExpressions;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// PostgreSQL refuses text longer than its <c>varchar(n)</c> column (22001; SQLite stores it). Client text that is
/// written is bounded where it enters, within its column: one character more is the same 400 naming the field and its
/// maximum on both databases, the maximum itself is stored, and an over-long create never fails other callers' batch.
/// </summary>
public abstract partial class ValueLengthTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Runtime = """
        "stream":{"protocol":"vnc","port":5901},"process":{"command":"xterm"}
        """;
    private const string Resources = """
        "defaultResources":{"cpu":"500m","memory":"512Mi"}
        """;

    /// <summary>"{c*N}" in a test case stands for N times the character c.</summary>
    [GeneratedRegex(@"\{(.)\*(\d+)\}")]
    private static partial Regex Repeat();

    private static string Expand(string text) => Repeat().Replace(text, m => new string(m.Groups[1].Value[0], int.Parse(m.Groups[2].Value)));

    [Theory]
    [InlineData("POST", "/api/v1/auth/login", """{"username":"{u*65}","password":"x"}""", "username", "must be at most 64 characters")]
    [InlineData("POST", "/api/v1/sessions", """{"template":"xterm","resources":{"cpu":"{0*29}500m"}}""", "resources.cpu", "must be at most 32 characters")]
    [InlineData("POST", "/api/v1/sessions", """{"template":"xterm","resources":{"memory":"{0*28}512Mi"}}""", "resources.memory", "must be at most 32 characters")]
    [InlineData("POST", "/api/v1/templates/{new}", """{"displayName":"{d*201}",""" + Resources + "," + Runtime + "}", "displayName", "must be at most 200 characters")]
    [InlineData("POST", "/api/v1/templates/{new}", """{"displayName":"X","category":"{c*101}",""" + Resources + "," + Runtime + "}", "category", "must be at most 100 characters")]
    [InlineData("POST", "/api/v1/templates/{new}", """{"displayName":"X","defaultResources":{"cpu":"{0*29}500m","memory":"512Mi"},""" + Runtime + "}", "defaultResources.cpu", "must be at most 32 characters")]
    [InlineData("POST", "/api/v1/templates/{n*64}", """{"displayName":"X",""" + Resources + "," + Runtime + "}", "name", "must be 1-63 characters")]
    [InlineData("POST", "/api/v1/users", """{"username":"{u*33}","password":"long-enough-1"}""", "username", "2-32 lowercase")]
    [InlineData("POST", "/api/v1/agents", """{"agentId":"{a*64}"}""", "agentId", "must be 1-63 characters")]
    [InlineData("POST", "/api/v1/agents", """{"agentId":"{new}","region":"{r*65}"}""", "region", "must be 1-64 characters")]
    public async Task Text_longer_than_its_column_is_400_naming_the_field_and_its_maximum(string method, string path, string body, string field, string problem)
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("len-");
        using var request = new HttpRequestMessage(new HttpMethod(method), Expand(path).Replace("{new}", name, StringComparison.Ordinal))
        {
            Content = new StringContent(Expand(body).Replace("{new}", name, StringComparison.Ordinal), Encoding.UTF8, "application/json"),
        };
        var error = await (await admin.SendAsync(request, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Validation failed");
        error.GetProperty("fields").GetProperty(field).GetString()!.ShouldContain(problem, Case.Sensitive);
    }

    [Fact]
    public async Task Text_as_long_as_its_column_is_stored()
    {
        var admin = await cp.AdminClientAsync();
        var template = ControlPlaneFixture.Unique("len-").PadRight(63, 't');
        var (cpu, memory) = (new string('0', 28) + "500m", new string('0', 27) + "512Mi");
        var definition = $$"""
            {"displayName":"{{new string('d', 200)}}","category":"{{new string('c', 100)}}",
             "defaultResources":{"cpu":"{{cpu}}","memory":"{{memory}}"},{{Runtime}}}
            """;
        var created = await (await admin.PostRawAsync($"/api/v1/templates/{template}", definition)).ShouldBeJsonAsync(HttpStatusCode.Created);
        created.GetProperty("displayName").GetString()!.Length.ShouldBe(200);
        created.GetProperty("category").GetString()!.Length.ShouldBe(100);

        var agentId = ControlPlaneFixture.Unique("len-").PadRight(63, 'a');
        await (await admin.PostJsonAsync("/api/v1/agents", new { agentId, region = new string('r', 64), maxSessions = 10 }))
            .ShouldBeJsonAsync(HttpStatusCode.Created);
        await cp.InsertAgentAsync(agentId, maxSessions: 10); // online now, as the hub would leave it
        var (user, _, _) = await cp.QuickUserAsync("len");
        var session = await (await user.PostJsonAsync("/api/v1/sessions", new { template })).ShouldBeJsonAsync(HttpStatusCode.Created);
        session.GetProperty("resources").GetProperty("cpu").GetString().ShouldBe(cpu);
        session.GetProperty("resources").GetProperty("memory").GetString().ShouldBe(memory);

        var login = await cp.Client().PostJsonAsync("/api/v1/auth/login", new { username = new string('u', 64), password = "x" });
        await login.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task The_session_creator_refuses_resources_longer_than_their_columns_itself()
    {
        // Behind the API's own validation: whoever calls the creator, such text never joins other callers' batch.
        await cp.InsertAgentAsync(ControlPlaneFixture.Unique("len-agent"), maxSessions: 1000);
        var (_, userId, username) = await cp.QuickUserAsync("lencreator");
        var creator = cp.App.Services.GetRequiredService<SessionCreator>();
        var outcome = await creator.CreateAsync(new SessionCreateRequest(
            new CurrentUser(userId, username, Roles.User), username, "xterm", null, new string('0', 28) + "512Mi", false, null), Ct);
        outcome.Session.ShouldBeNull();
        outcome.Error!.StatusCode.ShouldBe((int)HttpStatusCode.BadRequest);
        outcome.Error.Value!.Fields!["resources.memory"].ShouldStartWith("must be at most 32 characters", Case.Sensitive);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @userId", new { userId })).ShouldBe(0);
    }

    [Fact]
    public async Task A_create_naming_an_over_long_template_fails_alone_among_concurrent_creates()
    {
        var bad = await SharedCreateBatch.OneBadAmongGoodCreatesAsync(cp, "lenbatch", new string('t', 300));
        var error = await bad.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").GetProperty("template").GetString().ShouldStartWith("there is no template named", Case.Sensitive);
    }
}

public sealed class ValueLengthTests_Sqlite(SqliteControlPlane cp) : ValueLengthTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class ValueLengthTests_Postgres(PostgresControlPlane cp) : ValueLengthTests(cp), IClassFixture<PostgresControlPlane>;
