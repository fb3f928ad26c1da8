using System.Security.Claims;
using Microsoft.AspNetCore.Components;
using Microsoft.AspNetCore.Components.Authorization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Web;
using StreamSpace.ControlPlane.Web.Api;

namespace StreamSpace.Web.Tests.Infrastructure;

/// <summary>
/// bUnit context for the UI's stateful components: interactive server rendering, a signed-in user whose API
/// token sits in the cookie claims, a fake clock driving the live refresh, and the API answered by
/// <see cref="CannedApiHandler"/>.
/// </summary>
public abstract class ComponentTest : BunitContext
{
    public const string Token = "token-of-the-signed-in-user";

    protected ComponentTest(string username = "alice", bool admin = false)
    {
        var auth = AddAuthorization();
        auth.SetAuthorized(username);
        auth.SetClaims(new Claim(WebAuthentication.ApiTokenClaim, Token));
        if (admin)
        {
            auth.SetRoles(Roles.Admin);
            auth.SetPolicies(Policies.Admin, Policies.User);
        }
        else auth.SetPolicies(Policies.User);
        Services.AddSingleton<TimeProvider>(Time);
        Services.AddSingleton(Options.Create(UiOptions));
        Services.AddSingleton<ILoggerFactory>(Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        Services.AddSingleton(typeof(ILogger<>), typeof(Microsoft.Extensions.Logging.Abstractions.NullLogger<>));
        Services.AddScoped(sp => new StreamSpaceApiClient(
            new HttpClient(Api) { BaseAddress = new Uri("http://127.0.0.1:9/") },
            sp.GetRequiredService<AuthenticationStateProvider>(),
            sp.GetRequiredService<NavigationManager>()));
        // Last: it builds the renderer, after which no service can be added.
        SetRendererInfo(new RendererInfo("Server", isInteractive: true));
    }

    protected CannedApiHandler Api { get; } = new();
    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero));
    protected WebUiOptions UiOptions { get; } = new();
    protected DateTimeOffset Now => Time.GetUtcNow();

    protected Bunit.TestDoubles.BunitNavigationManager Navigation => Services.GetRequiredService<Bunit.TestDoubles.BunitNavigationManager>();

    /// <summary>Moves the fake clock by one live-refresh interval.</summary>
    protected void NextRefresh() => Time.Advance(UiOptions.LiveRefreshInterval);

    protected static string Json(object value) => System.Text.Json.JsonSerializer.Serialize(value, new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web));

    protected object Session(string id, string state, string? reason = null, string user = "alice", string template = "xterm", string? agent = "local") => new
    {
        id, name = id, user, template, state, agentId = agent,
        resources = new { cpu = "1", memory = "1Gi" },
        persistentHome = true,
        createdAt = Now.AddMinutes(-5), updatedAt = Now.AddMinutes(-1), stateReason = reason, lastActivityAt = Now.AddSeconds(-30),
    };
}
