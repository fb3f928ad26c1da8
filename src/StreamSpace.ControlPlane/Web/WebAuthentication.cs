using System.Security.Claims;
using Dapper;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Web;

/// <summary>
/// Browser sign-in: a cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) whose data-protected ticket carries
/// the user's API token, so the UI calls the API as that user and no script can read the token. <c>/api/*</c>
/// and any request with an <c>Authorization</c> header keep using the JWT bearer scheme.
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

    public static string SelectScheme(HttpContext context) =>
        context.Request.Path.StartsWithSegments("/api") || context.Request.Headers.Authorization.Count > 0
            ? JwtBearerDefaults.AuthenticationScheme
            : CookieScheme;

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
        var db = services.GetRequiredService<Db>();
        await using var conn = await db.OpenAsync(ct);
        var user = await conn.QuerySingleOrDefaultAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users WHERE id = @userId", new { userId }, cancellationToken: ct));
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
    }

    private static Task RejectAsync(CookieValidatePrincipalContext context)
    {
        context.RejectPrincipal();
        return context.HttpContext.SignOutAsync(CookieScheme);
    }
}
