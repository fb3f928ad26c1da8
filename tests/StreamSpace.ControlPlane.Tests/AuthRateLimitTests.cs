using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>A control plane with small login limits. The limiter is in memory, so one database suffices.</summary>
public sealed class RateLimitedControlPlane() : ControlPlaneFixture(DatabaseKind.Sqlite)
{
    public const int PerUsername = 3;
    public const int PerClient = 8;

    protected override IEnumerable<string> ExtraArgs =>
    [
        $"--StreamSpace:LoginAttemptsPerUsernamePerMinute={PerUsername}",
        $"--StreamSpace:LoginAttemptsPerClientPerMinute={PerClient}",
    ];
}

public sealed class AuthRateLimitTests(RateLimitedControlPlane cp) : IClassFixture<RateLimitedControlPlane>
{
    // Both tests share one client address (127.0.0.1) and thus one per-client budget of PerClient a minute:
    // the username test spends PerUsername + 1 of it, the client test the rest.

    [Fact]
    public async Task Too_many_attempts_for_one_username_are_429_with_retry_after_even_with_the_right_password()
    {
        var name = ControlPlaneFixture.Unique("victim");
        for (var i = 0; i < RateLimitedControlPlane.PerUsername; i++)
        {
            var wrong = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = "guess-" + i }, TestContext.Current.CancellationToken);
            await wrong.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        }
        var limited = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name.ToUpperInvariant(), password = "guess-x" }, TestContext.Current.CancellationToken);
        var error = await limited.ShouldBeErrorAsync(HttpStatusCode.TooManyRequests);
        error.GetProperty("error").GetString().ShouldBe("Too many requests");
        error.GetProperty("message").GetString()!.ShouldContain("username");
        var retryAfter = limited.Headers.RetryAfter?.Delta;
        retryAfter.ShouldNotBeNull();
        retryAfter.Value.ShouldBeInRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Too_many_attempts_from_one_client_are_429_across_usernames()
    {
        HttpResponseMessage? limited = null;
        for (var i = 0; i <= RateLimitedControlPlane.PerClient && limited is null; i++)
        {
            var response = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = ControlPlaneFixture.Unique("spray"), password = "guess-password" }, TestContext.Current.CancellationToken);
            if (response.StatusCode == HttpStatusCode.TooManyRequests) limited = response;
            else await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        }
        limited.ShouldNotBeNull($"no 429 within {RateLimitedControlPlane.PerClient + 1} attempts from one address");
        var error = await limited.ShouldBeErrorAsync(HttpStatusCode.TooManyRequests);
        error.GetProperty("message").GetString()!.ShouldContain("address");
        limited.Headers.RetryAfter?.Delta.ShouldNotBeNull();
    }

    [Fact]
    public void Limiter_counts_usernames_case_insensitively_and_separately_per_client()
    {
        using var limiter = new LoginRateLimiter(Options.Create(new StreamSpaceOptions { LoginAttemptsPerUsernamePerMinute = 2, LoginAttemptsPerClientPerMinute = 100 }));
        limiter.TryAttempt("bob", "10.0.0.1", out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("BOB", "10.0.0.2", out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("Bob", "10.0.0.3", out var after).ShouldBe(LoginThrottle.Username);
        after.ShouldBeGreaterThan(TimeSpan.Zero);
        limiter.TryAttempt("carol", "10.0.0.1", out _).ShouldBe(LoginThrottle.None);
    }
}
