using System.Net;
using System.Text.RegularExpressions;
using Dapper;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.Web.Tests.Infrastructure;

/// <summary>
/// The real control plane (Kestrel on a loopback port, a fresh SQLite file) for the UI's hosting tests:
/// sign-in, cookies, redirects and endpoint authorization, seen from a browser-like HTTP client.
/// </summary>
public class WebHostFixture : IAsyncLifetime
{
    public const string AdminPassword = "admin-test-password-1";
    public const string UserPassword = "user-password-1";

    private string _folder = null!;

    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;

    protected virtual void ConfigureServices(IServiceCollection services) { }

    public async ValueTask InitializeAsync()
    {
        _folder = Path.Combine(Path.GetTempPath(), "streamspace-web-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
        App = StreamSpaceApp.Build(
        [
            "--urls", "http://127.0.0.1:0",
            "--environment", "Production",
            $"--StreamSpace:Database=sqlite:{Path.Combine(_folder, "test.db")}",
            $"--StreamSpace:DataFolder={_folder}",
            $"--StreamSpace:AdminPassword={AdminPassword}",
            "--StreamSpace:EmbeddedAgent=false",
            // Every test signs in from 127.0.0.1: the real per-client limit (30/min) would throttle the suite.
            "--StreamSpace:LoginAttemptsPerClientPerMinute=100000",
            "--StreamSpace:LoginAttemptsPerUsernamePerMinute=100000",
            "--Logging:LogLevel:Default=Warning",
        ], ConfigureServices);
        await App.StartAsync();
        BaseAddress = new Uri(App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        GC.SuppressFinalize(this);
    }

    /// <summary>A browser-like client: keeps cookies, does not follow redirects (tests assert them).</summary>
    public BrowserClient Browser() => new(BaseAddress);

    /// <summary>Creates a user directly in the database (setup independent of the users API).</summary>
    public async Task<string> CreateUserAsync(string username, string role = Roles.User)
    {
        var id = Guid.NewGuid().ToString("N");
        var now = DateTimeOffset.UtcNow;
        await using var conn = await App.Services.GetRequiredService<Db>().OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
            VALUES (@id, @username, @hash, @role, @disabled, 5, 1, @now, @now)
            """,
            new { id, username, hash = PasswordHasher.Hash(UserPassword), role, disabled = false, now });
        return id;
    }

    public async Task SetDisabledAsync(string userId, bool disabled)
    {
        await using var conn = await App.Services.GetRequiredService<Db>().OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync("UPDATE users SET disabled = @disabled WHERE id = @userId", new { disabled, userId });
    }

    public static string Unique(string prefix) => $"{prefix}{Guid.NewGuid().ToString("N")[..8]}";
}

/// <summary>An HTTP client that behaves like a browser on one site: a cookie jar and the sign-in form.</summary>
public sealed partial class BrowserClient : IDisposable
{
    private readonly HttpClientHandler _handler;

    public BrowserClient(Uri baseAddress)
    {
        _handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false, UseCookies = true };
        Http = new HttpClient(_handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public HttpClient Http { get; }
    public CookieContainer Cookies => _handler.CookieContainer;

    /// <summary>Loads the sign-in page and returns the antiforgery token of its form.</summary>
    public async Task<string> SignInFormTokenAsync(string path = "/signin")
    {
        var html = await Http.GetStringAsync(path);
        return AntiforgeryField().Match(html) is { Success: true } m
            ? WebUtility.HtmlDecode(m.Groups[1].Value)
            : throw new InvalidOperationException("The sign-in page has no antiforgery token:\n" + html);
    }

    /// <summary>Posts the sign-in form as a browser would (with the page's antiforgery token).</summary>
    public async Task<HttpResponseMessage> SignInAsync(string username, string password, string? returnUrl = null)
    {
        var token = await SignInFormTokenAsync();
        var fields = new Dictionary<string, string> { ["__RequestVerificationToken"] = token, ["Username"] = username, ["Password"] = password };
        if (returnUrl is not null) fields["ReturnUrl"] = returnUrl;
        return await Http.PostAsync("/signin", new FormUrlEncodedContent(fields));
    }

    public void Dispose()
    {
        Http.Dispose();
        _handler.Dispose();
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}
