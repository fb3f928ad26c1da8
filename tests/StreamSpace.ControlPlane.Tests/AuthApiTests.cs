using System.Net;
using Dapper;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
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

    [Theory]
    [InlineData("Admin")]
    [InlineData(" ADMIN ")]
    public async Task A_username_in_capitals_logs_in_as_its_lowercase_user(string typed)
    {
        // Every username is lowercase, and phone keyboards capitalize the first letter.
        var response = await cp.Client().PostJsonAsync("/api/v1/auth/login", new { username = typed, password = ControlPlaneFixture.AdminPassword });
        var json = await response.ShouldBeJsonAsync(HttpStatusCode.OK);
        json.GetProperty("user").GetProperty("username").GetString().ShouldBe("admin");
    }

    [Fact]
    public async Task Wrong_password_is_401_with_an_error_body()
    {
        var response = await cp.Client().PostJsonAsync("/api/v1/auth/login", new { username = "admin", password = "nope-nope" });
        await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task A_login_whose_token_cannot_be_issued_is_not_audited_as_succeeded()
    {
        var ct = TestContext.Current.CancellationToken;
        var name = ControlPlaneFixture.Unique("noissue");
        await cp.CreateUserAsync(name, password: "user-password-1");
        async Task<long> SucceededAsync()
        {
            await using var conn = await cp.Db.OpenAsync(ct);
            return await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'login.succeeded' AND target = @name", new { name });
        }
        var before = await SucceededAsync();

        // A lifetime that start-up validation refuses (it would end past the last representable date), given to the issuer directly.
        var services = cp.App.Services;
        var issuer = new TokenIssuer(services.GetRequiredService<SigningKeyProvider>(),
            Options.Create(new StreamSpaceOptions { TokenLifetime = TimeSpan.FromDays(3_650_000) }), TimeProvider.System);
        await Should.ThrowAsync<ArgumentOutOfRangeException>(() => AuthApi.LoginAsync(new LoginRequest(name, "user-password-1"),
            cp.Db, issuer, services.GetRequiredService<AuditLog>(), services.GetRequiredService<LoginRateLimiter>(), new DefaultHttpContext(), ct));

        (await SucceededAsync()).ShouldBe(before);
    }
}

public sealed class AuthApiTests_Sqlite(SqliteControlPlane cp) : AuthApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class AuthApiTests_Postgres(PostgresControlPlane cp) : AuthApiTests(cp), IClassFixture<PostgresControlPlane>;
