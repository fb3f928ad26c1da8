using System.Runtime.ExceptionServices;
using System.Security.Claims;
using Dapper;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

public static class IdentitySetup
{
    public static IServiceCollection AddStreamSpaceIdentity(this IServiceCollection services)
    {
        services.AddSingleton<SigningKeyProvider>();
        services.AddSingleton<TokenIssuer>();
        services.AddSingleton<AdminBootstrap>();
        services.AddSingleton<LoginRateLimiter>();
        services.AddSingleton<TokenUserLookup>();
        services.AddStreamSpaceDataProtection();
        services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        services.AddSingleton<IConfigureOptions<JwtBearerOptions>, ConfigureJwt>();
        services.AddAuthorizationBuilder()
            .AddPolicy(Policies.User, p => p.RequireAuthenticatedUser())
            .AddPolicy(Policies.Admin, p => p.RequireAuthenticatedUser().RequireRole(Roles.Admin))
            // Default deny: an endpoint that names no policy still needs a signed-in user.
            .SetFallbackPolicy(new Microsoft.AspNetCore.Authorization.AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());
        return services;
    }

    /// <summary><see cref="HttpContext.Items"/> key: the database outage that kept a bearer token's user row from being read.</summary>
    private static readonly object UnreachableDatabase = new();

    /// <summary>
    /// Authentication, then the database outage that kept it from reading a token's user row thrown again (to be
    /// answered 503 by <see cref="Hosting.ErrorHandling"/>, as any request the outage fails).
    /// </summary>
    public static IApplicationBuilder UseStreamSpaceAuthentication(this IApplicationBuilder app) =>
        app.UseAuthentication().Use((context, next) =>
        {
            (context.Items[UnreachableDatabase] as ExceptionDispatchInfo)?.Throw();
            return next(context);
        });

    /// <summary>
    /// Data Protection (the sign-in cookie's and the antiforgery tokens' encryption) with its key ring in the database, the
    /// same on every replica (<see cref="DataProtectionKeyStore"/>).
    /// </summary>
    public static IServiceCollection AddStreamSpaceDataProtection(this IServiceCollection services)
    {
        services.AddSingleton<DataProtectionKeyStore>();
        services.AddSingleton<DataProtectionKeyRing>();
        services.AddDataProtection().SetApplicationName(DataProtectionKeyStore.ApplicationName);
        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(sp =>
            new ConfigureOptions<KeyManagementOptions>(o => o.XmlRepository = sp.GetRequiredService<DataProtectionKeyStore>()));
        return services;
    }

    private sealed class ConfigureJwt(SigningKeyProvider keys, TimeProvider time) : IConfigureNamedOptions<JwtBearerOptions>
    {
        public void Configure(string? name, JwtBearerOptions options) => Configure(options);

        public void Configure(JwtBearerOptions options)
        {
            options.MapInboundClaims = false;
            options.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = TokenIssuer.Issuer,
                ValidAudience = TokenIssuer.Audience,
                IssuerSigningKeyResolver = (_, _, _, _) => [keys.Key],
                ClockSkew = TimeSpan.FromSeconds(30),
                // Token lifetimes are judged on the app's TimeProvider, the clock that issued them.
                LifetimeValidator = (notBefore, expires, _, parameters) =>
                {
                    var now = time.GetUtcNow().UtcDateTime;
                    return (notBefore is not { } nbf || nbf - parameters.ClockSkew <= now) && expires is { } exp && now < exp + parameters.ClockSkew;
                },
                NameClaimType = ClaimTypes.Name,
                RoleClaimType = ClaimTypes.Role,
            };
            options.Events = new JwtBearerEvents
            {
                // A bearer token that is not even shaped like a JWT (header.payload.signature), such as an agent token on the
                // agent channel, fails here instead of inside the token handler, where it costs a thrown exception per request.
                OnMessageReceived = context =>
                {
                    var authorization = context.Request.Headers.Authorization.ToString();
                    if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && authorization.AsSpan(7).Count('.') != 2)
                        context.Fail("The bearer token is not a JWT.");
                    return Task.CompletedTask;
                },
                // Tokens are checked against the user row on every request: a disabled user, a bumped
                // token version (disable, role or password change) or a deleted user ends the token at once.
                OnTokenValidated = async context =>
                {
                    var principal = context.Principal!;
                    var userId = principal.FindFirst("sub")?.Value;
                    var tokenVersion = principal.FindFirst(TokenIssuer.TokenVersionClaim)?.Value;
                    UserRecord? user;
                    try
                    {
                        user = userId is null ? null
                            : await context.HttpContext.RequestServices.GetRequiredService<TokenUserLookup>().FindAsync(userId, context.HttpContext.RequestAborted);
                    }
                    catch (Exception ex) when (Hosting.ErrorHandling.IsDatabaseOutage(ex))
                    {
                        // Thrown from here, JwtBearerHandler logs it as an Error with its stack, on every request of an outage;
                        // it is thrown again right after authentication instead (UseStreamSpaceAuthentication): the same 503.
                        context.HttpContext.Items[UnreachableDatabase] = ExceptionDispatchInfo.Capture(ex);
                        context.Fail(ex);
                        return;
                    }
                    if (user is null || user.Disabled || tokenVersion != user.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture))
                    {
                        context.Fail("The token is no longer valid.");
                        return;
                    }
                    context.Principal = new ClaimsPrincipal(new ClaimsIdentity(
                    [
                        new Claim(ClaimTypes.NameIdentifier, user.Id),
                        new Claim(ClaimTypes.Name, user.Username),
                        new Claim(ClaimTypes.Role, user.Role),
                        // Checked again under the row lock where a change races with one to the caller (UsersApi).
                        new Claim(TokenIssuer.TokenVersionClaim, user.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                    ], JwtBearerDefaults.AuthenticationScheme, ClaimTypes.Name, ClaimTypes.Role));
                },
                OnChallenge = async context =>
                {
                    context.HandleResponse();
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    await context.Response.WriteAsJsonAsync(new Hosting.ApiError("Unauthorized",
                        context.AuthenticateFailure is null
                            ? "Sign in first: send 'Authorization: Bearer <token>' from POST /api/v1/auth/login."
                            : "The token is invalid or expired; sign in again."));
                },
                OnForbidden = context =>
                {
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    return context.Response.WriteAsJsonAsync(new Hosting.ApiError("Forbidden", "This needs the admin role."));
                },
            };
        }
    }
}
