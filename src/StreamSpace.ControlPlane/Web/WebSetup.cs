using Microsoft.AspNetCore.Authorization;
using StreamSpace.ControlPlane.Web.Api;
using StreamSpace.ControlPlane.Web.Components;

namespace StreamSpace.ControlPlane.Web;

/// <summary>
/// The web UI: a Blazor Web App (interactive server rendering) on the control plane's own origin. It is a
/// client of the HTTP API (<see cref="StreamSpaceApiClient"/>) and signs users in with a cookie that carries
/// their API token inside a data-protected ticket.
/// </summary>
public static class WebSetup
{
    /// <summary>Registers the UI's services. Call after <c>AddStreamSpaceIdentity</c>: it chooses the default scheme.</summary>
    public static IServiceCollection AddStreamSpaceWeb(this IServiceCollection services)
    {
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddCascadingAuthenticationState();
        services.AddAntiforgery(o =>
        {
            o.Cookie.Name = "streamspace.antiforgery";
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });
        services.AddStreamSpaceCookieAuthentication();
        services.AddOptions<WebUiOptions>().BindConfiguration(WebUiOptions.Section).ValidateOnStart()
            .Validate(o => o.Validate() is null, "Invalid StreamSpace:Web settings");
        services.AddSingleton<ApiLoopbackAddress>();
        services.AddHttpClient<StreamSpaceApiClient>((sp, http) => http.BaseAddress = sp.GetRequiredService<ApiLoopbackAddress>().BaseAddress);
        return services;
    }

    /// <summary>Maps the UI: static assets, sign-in/out endpoints and the Razor components (with the Blazor hub).</summary>
    public static IEndpointRouteBuilder MapStreamSpaceWeb(this WebApplication app)
    {
        app.MapStreamSpaceStaticAssets();
        app.MapSignInEndpoints();
        var components = app.MapRazorComponents<App>().AddInteractiveServerRenderMode();
        // The Blazor hub and framework endpoints must be reachable by anyone (the sign-in page itself loads the
        // script); each page declares [Authorize] or [AllowAnonymous] and is enforced on its own endpoint.
        components.Add(endpoint =>
        {
            if (endpoint is RouteEndpointBuilder route && route.RoutePattern.RawText is { } pattern
                && (pattern.StartsWith("/_blazor", StringComparison.Ordinal) || pattern.StartsWith("_blazor", StringComparison.Ordinal)
                    || pattern.StartsWith("/_framework", StringComparison.Ordinal) || pattern.StartsWith("_framework", StringComparison.Ordinal)))
                endpoint.Metadata.Add(new AllowAnonymousAttribute());
        });
        return app;
    }

    private static void MapStreamSpaceStaticAssets(this WebApplication app)
    {
        // The static web assets manifest is named after the control plane assembly. When the app is hosted by
        // another entry assembly (the test fixtures), look for it explicitly and fall back to wwwroot files.
        var manifest = Path.Combine(AppContext.BaseDirectory, typeof(WebSetup).Assembly.GetName().Name + ".staticwebassets.endpoints.json");
        if (File.Exists(manifest))
            app.MapStaticAssets(manifest).AllowAnonymous();
    }
}
