using System.Net;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>Whatever arrives at the login endpoint, the answer is a 4xx with <c>error</c> and <c>message</c>.</summary>
public abstract class AuthBadInputTests(ControlPlaneFixture cp)
{
    [Theory]
    [InlineData("""{"username":"admin"}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"password":"whatever-1"}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"","password":""}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"   ","password":"x"}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":42,"password":"whatever-1"}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"admin","password":["a"]}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"admin","password":"whatever-1","remember":true}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"admin",""", HttpStatusCode.BadRequest)]
    [InlineData("""not json at all""", HttpStatusCode.BadRequest)]
    [InlineData("""[]""", HttpStatusCode.BadRequest)]
    [InlineData("""null""", HttpStatusCode.BadRequest)]
    [InlineData("", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","password":"whatever-1"}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"username":"nobody-here","password":"whatever-1"}""", HttpStatusCode.Unauthorized)]
    public async Task Bad_login_bodies_get_a_clear_4xx(string body, HttpStatusCode expected)
    {
        var response = await cp.Client().PostRawAsync("/api/v1/auth/login", body);
        await response.ShouldBeErrorAsync(expected);
    }

    [Fact]
    public async Task Missing_fields_are_named()
    {
        var response = await cp.Client().PostRawAsync("/api/v1/auth/login", "{}");
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("fields").TryGetProperty("username", out _).ShouldBeTrue();
        error.GetProperty("fields").TryGetProperty("password", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task Wrong_content_type_is_4xx()
    {
        var response = await cp.Client().PostRawAsync("/api/v1/auth/login", "username=admin&password=x", "application/x-www-form-urlencoded");
        var status = (int)response.StatusCode;
        status.ShouldBeInRange(400, 499);
        await response.ShouldBeErrorAsync(response.StatusCode);
    }

    [Fact]
    public async Task Huge_body_is_413()
    {
        var huge = $$"""{"username":"admin","password":"{{new string('p', 1024 * 1024 + 1)}}"}""";
        var response = await cp.Client().PostRawAsync("/api/v1/auth/login", huge);
        await response.ShouldBeErrorAsync(HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task Garbage_bearer_token_is_401()
    {
        await (await cp.Client("not-a-jwt").GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }
}

public sealed class AuthBadInputTests_Sqlite(SqliteControlPlane cp) : AuthBadInputTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class AuthBadInputTests_Postgres(PostgresControlPlane cp) : AuthBadInputTests(cp), IClassFixture<PostgresControlPlane>;
