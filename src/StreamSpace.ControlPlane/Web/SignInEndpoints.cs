using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Web;

/// <summary>The sign-in form's target.</summary>
public sealed class SignInForm
{
    public string? Username { get; set; }
    public string? Password { get; set; }
    public string? ReturnUrl { get; set; }
}

/// <summary>
/// <c>POST /signin</c> and <c>POST /signout</c>: form posts (antiforgery-checked, because they bind a form) that
/// turn the API login into a cookie and back. The pages themselves are Blazor components.
/// </summary>
public static class SignInEndpoints
{
    /// <summary>Codes for <c>/signin?error=</c>; the page turns them into sentences.</summary>
    public const string ErrorInvalid = "invalid";
    public const string ErrorMissing = "missing";
    public const string ErrorRateLimited = "rate";
    public const string ErrorUnavailable = "unavailable";

    public static IEndpointRouteBuilder MapSignInEndpoints(this IEndpointRouteBuilder routes)
    {
        routes.MapPost("/signin", SignInAsync).AllowAnonymous().ExcludeFromDescription()
            .WithMetadata(new RequireAntiforgeryTokenAttribute());
        // Anonymous so that a browser whose sign-in already expired can still clear its cookie.
        routes.MapPost("/signout", (Delegate)SignOutAsync).AllowAnonymous().ExcludeFromDescription()
            .WithMetadata(new RequireAntiforgeryTokenAttribute());
        return routes;
    }

    private static async Task<RedirectHttpResult> SignInAsync(
        [FromForm] SignInForm form, Db db, TokenIssuer tokens, AuditLog audit, HttpContext http, CancellationToken ct)
    {
        var returnUrl = LocalUrl.OrRoot(form.ReturnUrl);
        if (string.IsNullOrWhiteSpace(form.Username) || string.IsNullOrEmpty(form.Password))
            return BackToSignIn(ErrorMissing, returnUrl, form.Username);

        var result = await AuthApi.LoginAsync(new LoginRequest(form.Username, form.Password), db, tokens, audit, http, ct);
        if (result.Result is not Ok<LoginResponse> { Value: { } login })
        {
            var status = (result.Result as IStatusCodeHttpResult)?.StatusCode;
            return BackToSignIn(status switch
            {
                StatusCodes.Status429TooManyRequests => ErrorRateLimited,
                StatusCodes.Status503ServiceUnavailable => ErrorUnavailable,
                _ => ErrorInvalid,
            }, returnUrl, form.Username);
        }

        var principal = WebAuthentication.CreatePrincipal(login.User.Id, login.User.Username, login.User.Role, login.Token);
        await http.SignInAsync(WebAuthentication.CookieScheme, principal, new AuthenticationProperties
        {
            ExpiresUtc = login.ExpiresAt,
            IsPersistent = false,
            AllowRefresh = false,
        });
        return TypedResults.LocalRedirect(returnUrl);
    }

    private static async Task<RedirectHttpResult> SignOutAsync(HttpContext http)
    {
        await http.SignOutAsync(WebAuthentication.CookieScheme);
        return TypedResults.LocalRedirect("/signin?signedOut=1");
    }

    private static RedirectHttpResult BackToSignIn(string error, string returnUrl, string? username) =>
        TypedResults.LocalRedirect(
            $"/signin?error={error}&returnUrl={Uri.EscapeDataString(returnUrl)}" +
            (string.IsNullOrWhiteSpace(username) ? "" : $"&username={Uri.EscapeDataString(username.Trim())}"));
}
