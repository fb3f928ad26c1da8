using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Web;

/// <summary>
/// Browser sign-in: a cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) whose data-protected ticket carries
/// the user's API token, so the UI calls the API as that user and no script can read the token. Any request
/// with an <c>Authorization</c> header, and any <c>/api/*</c> request without the cookie, uses the JWT bearer
/// scheme as before; a same-origin page (the noVNC viewer) may call <c>/api/*</c> with the cookie, and then
/// gets the API's JSON 401/403 instead of a redirect.
/// </summary>
public static class WebAuthentication
{
    public const string CookieScheme = "StreamSpace.Cookie";
    /// <summary>The default scheme: forwards to bearer or cookie per request.</summary>
    public const string SelectorScheme = "StreamSpace.BearerOrCookie";
    /// <summary>Claim holding the API token inside the cookie ticket (never sent to the browser in clear).</summary>
    public const string ApiTokenClaim = "streamspace:api_token";
    public const string CookieName = "streamspace.auth";

    public static IServiceCollection AddStreamSpaceCookieAuthentication(this IServiceCollection services)
    {
        services.AddAuthentication()
            .AddCookie(CookieScheme, o =>
            {
                o.Cookie.Name = CookieName;
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Strict;
                o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                o.LoginPath = "/signin";
                o.AccessDeniedPath = "/denied";
                o.ReturnUrlParameter = "returnUrl";
                // The ticket lives exactly as long as the API token inside it (set at sign-in).
                o.SlidingExpiration = false;
                o.Events.OnValidatePrincipal = ValidatePrincipalAsync;
                o.Events.OnRedirectToLogin = context => IsApi(context.Request)
                    ? WriteApiErrorAsync(context.Response, StatusCodes.Status401Unauthorized, "Unauthorized", "Your sign-in has expired or is invalid; sign in again.")
                    : RedirectAsync(context);
                o.Events.OnRedirectToAccessDenied = context => IsApi(context.Request)
                    ? WriteApiErrorAsync(context.Response, StatusCodes.Status403Forbidden, "Forbidden", "This needs the admin role.")
                    : RedirectAsync(context);
            })
            .AddPolicyScheme(SelectorScheme, "Bearer token for the API, cookie for the UI", o => o.ForwardDefaultSelector = SelectScheme);
        // PostConfigure: runs after AddAuthentication(JwtBearer) set the JWT scheme as the default.
        services.PostConfigure<AuthenticationOptions>(o =>
        {
            o.DefaultScheme = SelectorScheme;
            o.DefaultAuthenticateScheme = SelectorScheme;
            o.DefaultChallengeScheme = SelectorScheme;
            o.DefaultForbidScheme = SelectorScheme;
        });
        return services;
    }

    /// <summary>Bearer whenever a token is sent; otherwise the cookie when there is one; otherwise bearer for the API.</summary>
    public static string SelectScheme(HttpContext context)
    {
        if (context.Request.Headers.Authorization.Count > 0) return JwtBearerDefaults.AuthenticationScheme;
        if (IsApi(context.Request) && !context.Request.Cookies.ContainsKey(CookieName)) return JwtBearerDefaults.AuthenticationScheme;
        return CookieScheme;
    }

    private static bool IsApi(HttpRequest request) => request.Path.StartsWithSegments("/api");

    private static Task WriteApiErrorAsync(HttpResponse response, int status, string error, string message)
    {
        response.StatusCode = status;
        return response.WriteAsJsonAsync(new Hosting.ApiError(error, message));
    }

    /// <summary>
    /// Redirects to the sign-in or denied page by path and query only. The handler's URI is absolute, built from the
    /// request as it arrived: behind a TLS-terminating proxy that is <c>http://</c>, and would send the browser off https.
    /// A relative Location keeps the browser's own scheme and host.
    /// </summary>
    private static Task RedirectAsync(RedirectContext<CookieAuthenticationOptions> context)
    {
        context.Response.Redirect(PathAndQuery(context.RedirectUri, context.Request));
        return Task.CompletedTask;
    }

    /// <summary><paramref name="redirectUri"/> without the scheme and host the handler put in front of it (the request's own).</summary>
    private static string PathAndQuery(string redirectUri, HttpRequest request)
    {
        var origin = request.Scheme + Uri.SchemeDelimiter + request.Host;
        if (redirectUri.StartsWith(origin + "/", StringComparison.OrdinalIgnoreCase)) return redirectUri[origin.Length..];
        return Uri.TryCreate(redirectUri, UriKind.Absolute, out var absolute) && (absolute.Scheme == Uri.UriSchemeHttp || absolute.Scheme == Uri.UriSchemeHttps)
            ? absolute.PathAndQuery
            : redirectUri;
    }

    /// <summary>
    /// SameSite=Strict already keeps other sites' requests from carrying the cookie, but not a page on another port of
    /// this host (the same site); so an API call that changes something with the cookie must also pass the browser-origin
    /// rule (<see cref="BrowserOrigin"/>: the browser's Sec-Fetch-Site, else its Origin).
    /// </summary>
    private static bool IsCrossSiteApiWrite(HttpRequest request) =>
        IsApi(request) && !HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method) && !HttpMethods.IsOptions(request.Method)
        && !BrowserOrigin.IsAllowed(request);

    /// <summary>The principal stored in the cookie: the user's identity plus the API token.</summary>
    internal static ClaimsPrincipal CreatePrincipal(string userId, string username, string role, string apiToken) =>
        new(new ClaimsIdentity(
        [
            new Claim(ClaimTypes.NameIdentifier, userId),
            new Claim(ClaimTypes.Name, username),
            new Claim(ClaimTypes.Role, role),
            new Claim(ApiTokenClaim, apiToken),
        ], CookieScheme, ClaimTypes.Name, ClaimTypes.Role));

    /// <summary>
    /// On every request: the API token in the ticket must still be valid (signature, lifetime) and its user must
    /// still exist, be enabled and have the same token version; the role is refreshed from the database. Otherwise
    /// the cookie is dropped and the browser goes back to the sign-in page.
    /// </summary>
    private static async Task ValidatePrincipalAsync(CookieValidatePrincipalContext context)
    {
        var token = context.Principal?.FindFirst(ApiTokenClaim)?.Value;
        var services = context.HttpContext.RequestServices;
        var ct = context.HttpContext.RequestAborted;
        if (string.IsNullOrEmpty(token))
        {
            await RejectAsync(context);
            return;
        }
        if (IsCrossSiteApiWrite(context.Request))
        {
            // Refuse this request only; the browser's sign-in stays.
            context.RejectPrincipal();
            return;
        }
        var jwtOptions = services.GetRequiredService<IOptionsMonitor<JwtBearerOptions>>().Get(JwtBearerDefaults.AuthenticationScheme);
        var parameters = jwtOptions.TokenValidationParameters.Clone();
        parameters.ClockSkew = TimeSpan.Zero;
        var time = services.GetRequiredService<TimeProvider>();
        parameters.LifetimeValidator = (notBefore, expires, _, _) => expires is { } e && e > time.GetUtcNow().UtcDateTime;
        var validation = await new JsonWebTokenHandler().ValidateTokenAsync(token, parameters);
        if (!validation.IsValid)
        {
            await RejectAsync(context);
            return;
        }
        var userId = validation.ClaimsIdentity.FindFirst(JwtRegisteredClaimNames.Sub)?.Value;
        var tokenVersion = validation.ClaimsIdentity.FindFirst(TokenIssuer.TokenVersionClaim)?.Value;
        var user = userId is null ? null : await services.GetRequiredService<TokenUserLookup>().FindAsync(userId, ct);
        if (user is null || user.Disabled || tokenVersion != user.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture))
        {
            await RejectAsync(context);
            return;
        }
        if (user.Role != context.Principal!.FindFirstValue(ClaimTypes.Role) || user.Username != context.Principal!.Identity?.Name)
        {
            context.ReplacePrincipal(CreatePrincipal(user.Id, user.Username, user.Role, token));
            context.ShouldRenew = true;
        }
        // The version this request's token was checked at, as the bearer path puts it in the principal: what a change
        // racing with the request is checked against (a viewer ticket is issued only at that version).
        var identity = (ClaimsIdentity)context.Principal!.Identity!;
        foreach (var earlier in identity.FindAll(TokenIssuer.TokenVersionClaim).ToList()) identity.RemoveClaim(earlier);
        identity.AddClaim(new Claim(TokenIssuer.TokenVersionClaim, tokenVersion!));
    }

    private static Task RejectAsync(CookieValidatePrincipalContext context)
    {
        context.RejectPrincipal();
        return context.HttpContext.SignOutAsync(CookieScheme);
    }
}
