using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>A control plane with a small per-username login limit. The limiter is in memory, so one database suffices.</summary>
public sealed class UsernameRateLimitedControlPlane() : ControlPlaneFixture(DatabaseKind.Sqlite)
{
    public const int PerUsername = 3;

    protected override IEnumerable<string> ExtraArgs => [$"--StreamSpace:LoginAttemptsPerUsernamePerMinute={PerUsername}"];
}

/// <summary>A control plane with a small per-client login limit (every test client is 127.0.0.1).</summary>
public sealed class ClientRateLimitedControlPlane() : ControlPlaneFixture(DatabaseKind.Sqlite)
{
    public const int PerClient = 5;

    protected override IEnumerable<string> ExtraArgs => [$"--StreamSpace:LoginAttemptsPerClientPerMinute={PerClient}"];
}

public sealed class AuthRateLimitUsernameTests(UsernameRateLimitedControlPlane cp) : IClassFixture<UsernameRateLimitedControlPlane>
{
    [Fact]
    public async Task Too_many_attempts_for_one_username_are_429_with_retry_after_even_with_the_right_password()
    {
        var name = ControlPlaneFixture.Unique("victim");
        await cp.CreateUserAsync(name, password: "the-right-password"); // one successful login
        for (var i = 1; i < UsernameRateLimitedControlPlane.PerUsername; i++)
        {
            var wrong = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name, password = "guess-" + i }, TestContext.Current.CancellationToken);
            await wrong.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        }
        var limited = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = name.ToUpperInvariant(), password = "the-right-password" }, TestContext.Current.CancellationToken);
        var error = await limited.ShouldBeErrorAsync(HttpStatusCode.TooManyRequests);
        error.GetProperty("error").GetString().ShouldBe("Too many requests");
        error.GetProperty("message").GetString()!.ShouldContain("username");
        var retryAfter = limited.Headers.RetryAfter?.Delta;
        retryAfter.ShouldNotBeNull();
        retryAfter.Value.ShouldBeInRange(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));

        // Other accounts are not affected by one account being throttled.
        await cp.CreateUserAsync(ControlPlaneFixture.Unique("bystander"));
    }
}

public sealed class AuthRateLimitClientTests(ClientRateLimitedControlPlane cp) : IClassFixture<ClientRateLimitedControlPlane>
{
    [Fact]
    public async Task Too_many_attempts_from_one_client_are_429_across_usernames()
    {
        for (var i = 0; i < ClientRateLimitedControlPlane.PerClient; i++)
        {
            var response = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = ControlPlaneFixture.Unique("spray"), password = "guess-password" }, TestContext.Current.CancellationToken);
            await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        }
        var limited = await cp.Client().PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password = ControlPlaneFixture.AdminPassword }, TestContext.Current.CancellationToken);
        var error = await limited.ShouldBeErrorAsync(HttpStatusCode.TooManyRequests);
        error.GetProperty("message").GetString()!.ShouldContain("address");
        limited.Headers.RetryAfter?.Delta.ShouldNotBeNull();
    }
}

public sealed class AuthRateLimiterTests
{
    [Fact]
    public void Limiter_counts_usernames_case_insensitively_and_separately_per_client()
    {
        var limiter = new LoginRateLimiter(Options.Create(new StreamSpaceOptions { LoginAttemptsPerUsernamePerMinute = 2, LoginAttemptsPerClientPerMinute = 100 }), TimeProvider.System);
        limiter.TryAttempt("bob", IPAddress.Parse("10.0.0.1"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("BOB", IPAddress.Parse("10.0.0.2"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("Bob", IPAddress.Parse("10.0.0.3"), out var after).ShouldBe(LoginThrottle.Username);
        after.ShouldBeGreaterThan(TimeSpan.Zero);
        limiter.TryAttempt("carol", IPAddress.Parse("10.0.0.1"), out _).ShouldBe(LoginThrottle.None);
    }

    [Fact]
    public void A_refused_attempt_is_told_when_its_window_ends_and_ended_windows_are_forgotten()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.Parse("2026-12-02T06:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var limiter = new LoginRateLimiter(Options.Create(new StreamSpaceOptions { LoginAttemptsPerUsernamePerMinute = 2, LoginAttemptsPerClientPerMinute = 3 }), time);
        var client = IPAddress.Parse("10.0.0.1");
        limiter.TryAttempt("bob", client, out _).ShouldBe(LoginThrottle.None);
        time.Advance(TimeSpan.FromSeconds(20));
        limiter.TryAttempt("bob", client, out _).ShouldBe(LoginThrottle.None);
        time.Advance(TimeSpan.FromSeconds(15));
        // Bob's window began 35 s ago: 25 s are left, not a whole minute.
        limiter.TryAttempt("bob", client, out var after).ShouldBe(LoginThrottle.Username);
        after.ShouldBe(TimeSpan.FromSeconds(25));
        // That attempt still counted for the address (its third): the address is refused too, until its own window ends.
        limiter.TryAttempt("carol", client, out after).ShouldBe(LoginThrottle.Client);
        after.ShouldBe(TimeSpan.FromSeconds(25));
        time.Advance(TimeSpan.FromSeconds(25));
        limiter.TryAttempt("bob", client, out _).ShouldBe(LoginThrottle.None, "both windows ended");
        // A minute later the windows of keys not seen since are swept away on the next attempt.
        limiter.TryAttempt("dave", IPAddress.Parse("10.0.0.2"), out _).ShouldBe(LoginThrottle.None);
        limiter.TrackedKeys.ShouldBe(4);
        time.Advance(TimeSpan.FromMinutes(2));
        limiter.TryAttempt("erin", IPAddress.Parse("10.0.0.3"), out _).ShouldBe(LoginThrottle.None);
        limiter.TrackedKeys.ShouldBe(2, "only erin and her address");
    }

    [Fact]
    public void An_ipv6_client_counts_by_its_64_network_and_an_ipv4_one_by_its_address()
    {
        var limiter = new LoginRateLimiter(Options.Create(new StreamSpaceOptions { LoginAttemptsPerUsernamePerMinute = 100, LoginAttemptsPerClientPerMinute = 2 }), TimeProvider.System);
        // One host, a new address of its /64 for every attempt.
        limiter.TryAttempt("a", IPAddress.Parse("2001:db8:1:2::1"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("b", IPAddress.Parse("2001:db8:1:2:ffff::9"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("c", IPAddress.Parse("2001:db8:1:2:abcd:1:2:3"), out _).ShouldBe(LoginThrottle.Client);
        limiter.TryAttempt("d", IPAddress.Parse("2001:db8:1:3::1"), out _).ShouldBe(LoginThrottle.None, "another /64");
        // IPv4, also when it arrives mapped into IPv6, is one address.
        limiter.TryAttempt("e", IPAddress.Parse("192.0.2.7"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("f", IPAddress.Parse("::ffff:192.0.2.7"), out _).ShouldBe(LoginThrottle.None);
        limiter.TryAttempt("g", IPAddress.Parse("192.0.2.7"), out _).ShouldBe(LoginThrottle.Client);
        limiter.TryAttempt("h", IPAddress.Parse("192.0.2.8"), out _).ShouldBe(LoginThrottle.None);
    }
}
