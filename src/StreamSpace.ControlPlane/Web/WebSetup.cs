using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Hosting.StaticWebAssets;
using Microsoft.Extensions.Options;
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
        // Also checked when the settings are read (StreamSpaceOptions.FromConfiguration); this names the setting for hosts built otherwise.
        services.AddOptions<WebUiOptions>().BindConfiguration(WebUiOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<WebUiOptions>, ValidateWebUiOptions>();
        services.AddSingleton<ApiLoopbackAddress>();
        services.AddHttpClient<StreamSpaceApiClient>((sp, http) => http.BaseAddress = sp.GetRequiredService<ApiLoopbackAddress>().BaseAddress);
        return services;
    }

    /// <summary>Maps the UI: static assets, sign-in/out endpoints and the Razor components (with the Blazor hub).</summary>
    public static IEndpointRouteBuilder MapStreamSpaceWeb(this WebApplication app)
    {
        app.UseBlazorHubOriginCheck();
        app.UseBrowserNotFoundPage();
        app.MapStreamSpaceStaticAssets();
        app.MapSignInEndpoints();
        var components = app.MapRazorComponents<App>().AddInteractiveServerRenderMode();
        // The Blazor hub and framework endpoints must be reachable by anyone (the sign-in page itself loads the
        // script); each page declares [Authorize] or [AllowAnonymous] and is enforced on its own endpoint. The hub
        // is reachable from this control plane's own pages only (UseBlazorHubOriginCheck above).
        components.Add(endpoint =>
        {
            if (endpoint is RouteEndpointBuilder route && route.RoutePattern.RawText is { } pattern
                && (pattern.StartsWith("/_blazor", StringComparison.Ordinal) || pattern.StartsWith("_blazor", StringComparison.Ordinal)
                    || pattern.StartsWith("/_framework", StringComparison.Ordinal) || pattern.StartsWith("_framework", StringComparison.Ordinal)))
                endpoint.Metadata.Add(new AllowAnonymousAttribute());
        });
        return app;
    }

    private sealed class ValidateWebUiOptions : IValidateOptions<WebUiOptions>
    {
        public ValidateOptionsResult Validate(string? name, WebUiOptions options) =>
            options.Validate() is { } error ? ValidateOptionsResult.Fail("Invalid StreamSpace configuration: " + error) : ValidateOptionsResult.Success;
    }

    private static void MapStreamSpaceStaticAssets(this WebApplication app)
    {
        var name = typeof(WebSetup).Assembly.GetName().Name!;
        // Run from a build (not a publish), the assets (app.css, blazor.web.js) stay in the project and package
        // folders listed by the runtime manifest. ASP.NET Core loads that manifest only in Development and only
        // under the entry assembly's name, so load it here for every other case (production runs, test hosts).
        var runtimeManifest = Path.Combine(AppContext.BaseDirectory, name + ".staticwebassets.runtime.json");
        var alreadyLoaded = app.Environment.IsDevelopment() && app.Environment.ApplicationName == name;
        if (!alreadyLoaded && File.Exists(runtimeManifest))
        {
            var manifestSetting = new ConfigurationBuilder()
                .AddInMemoryCollection([new KeyValuePair<string, string?>(WebHostDefaults.StaticWebAssetsKey, runtimeManifest)])
                .Build();
            StaticWebAssetsLoader.UseStaticWebAssets(app.Environment, manifestSetting);
        }
        var endpointsManifest = Path.Combine(AppContext.BaseDirectory, name + ".staticwebassets.endpoints.json");
        if (File.Exists(endpointsManifest))
        {
            // A group, so that AllowAnonymous also reaches the fallback endpoint that a build manifest adds for
            // files created after start-up (it only matches files that exist under wwwroot).
            var assets = app.MapGroup("");
            assets.AllowAnonymous();
            assets.MapStaticAssets(endpointsManifest);
        }
    }
}
