using System.Net;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class AuthApiTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Admin_logs_in_with_the_configured_password()
    {
        var response = await cp.Client().PostJsonAsync("/api/v1/auth/login", new { username = "admin", password = ControlPlaneFixture.AdminPassword });
        var json = await response.ShouldBeJsonAsync(HttpStatusCode.OK);
        json.GetProperty("token").GetString().ShouldNotBeNullOrEmpty();
        json.GetProperty("user").GetProperty("role").GetString().ShouldBe("admin");
    }

    [Fact]
    public async Task Wrong_password_is_401_with_an_error_body()
    {
        var response = await cp.Client().PostJsonAsync("/api/v1/auth/login", new { username = "admin", password = "nope-nope" });
        await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }
}

public sealed class AuthApiTests_Sqlite(SqliteControlPlane cp) : AuthApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class AuthApiTests_Postgres(PostgresControlPlane cp) : AuthApiTests(cp), IClassFixture<PostgresControlPlane>;
