using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
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
/// <c>POST /signin</c> and <c>POST /signout</c>: form posts (each checks its antiforgery token itself) that
/// turn the API login into a cookie and back. The pages themselves are Blazor components.
/// </summary>
public static class SignInEndpoints
{
    /// <summary>Codes for <c>/signin?error=</c>; the page turns them into sentences.</summary>
    public const string ErrorInvalid = "invalid";
    public const string ErrorMissing = "missing";
    public const string ErrorRateLimited = "rate";
    public const string ErrorUnavailable = "unavailable";
    /// <summary>The form's antiforgery token was made for another sign-in state (the page was loaded before one in another tab).</summary>
    public const string ErrorStaleForm = "stale";

    public static IEndpointRouteBuilder MapSignInEndpoints(this IEndpointRouteBuilder routes)
    {
        // Checks its antiforgery token itself (SignInAsync): a failed check by the middleware is a bare 400 for a form that
        // only went stale, because another tab signed in or out after this page was loaded.
        // Ahead of the sign-in page's own endpoint (a Blazor component answers POSTs too, with an empty 400 for any it does
        // not take): every POST /signin is this one's, whatever its body.
        routes.MapPost("/signin", SignInAsync).AllowAnonymous().ExcludeFromDescription()
            .DisableAntiforgery().WithOrder(-1);
        // Anonymous so that a browser whose sign-in already expired can still clear its cookie. Checks its antiforgery
        // token itself (SignOutAsync): the middleware only records a failed check, which refuses the request when the
        // endpoint binds a form, and this one binds none.
        routes.MapPost("/signout", SignOutAsync).AllowAnonymous().ExcludeFromDescription()
            .DisableAntiforgery();
        return routes;
    }

    private static async Task<Results<RedirectHttpResult, JsonHttpResult<ApiError>>> SignInAsync(
        HttpContext http, IAntiforgery antiforgery, IOptions<AntiforgeryOptions> antiforgeryOptions, CancellationToken ct)
    {
        // Read here rather than bound ([FromForm]): that made routing pass a post without a form (no body, JSON) to the
        // sign-in page's endpoint, an empty 400 page; this says what the endpoint takes.
        if (!http.Request.HasFormContentType)
            return ApiErrors.Of(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                "POST /signin takes the sign-in page's form (application/x-www-form-urlencoded); sign in from /signin, or use POST /api/v1/auth/login.");
        IFormCollection fields;
        try
        {
            fields = await http.Request.ReadFormAsync(ct);
        }
        catch (Exception ex) when (ex is InvalidDataException or BadHttpRequestException)
        {
            // Over the form limits (field count, key or value length), or a body cut short.
            return ApiErrors.Of(StatusCodes.Status400BadRequest, "Bad request", "The sign-in form cannot be read; submit it from the sign-in page.");
        }
        var form = new SignInForm
        {
            Username = fields["Username"] is [{ } username] ? username : null,
            Password = fields["Password"] is [{ } password] ? password : null,
            ReturnUrl = fields["ReturnUrl"] is [{ } returnTo] ? returnTo : null,
        };
        var returnUrl = LocalUrl.OrRoot(form.ReturnUrl);
        if (!await antiforgery.IsRequestValidAsync(http))
        {
            // No token at all: not our form (a cross-site post, a script); refused as the middleware would.
            if (http.Request.Form[antiforgeryOptions.Value.FormFieldName] is not [{ Length: > 0 }])
                return ApiErrors.Of(StatusCodes.Status400BadRequest, "Bad request", "The sign-in form has no antiforgery token; submit it from the sign-in page.");
            // Our form, gone stale: signed in meanwhile means there is nothing left to do; otherwise the form is shown again.
            return http.User.Identity?.IsAuthenticated == true
                ? TypedResults.LocalRedirect(returnUrl)
                : BackToSignIn(ErrorStaleForm, returnUrl, form.Username);
        }
        if (string.IsNullOrWhiteSpace(form.Username) || string.IsNullOrEmpty(form.Password))
            return BackToSignIn(ErrorMissing, returnUrl, form.Username);

        var result = await ApiLoginAsync(new LoginRequest(form.Username, form.Password), http, ct);
        if (result is not Ok<LoginResponse> { Value: { } login })
        {
            var status = (result as IStatusCodeHttpResult)?.StatusCode;
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

    /// <summary>
    /// The API's own login (<see cref="AuthApi.LoginAsync"/>), called in-process with the browser's request, so
    /// validation, throttling and the audit log see the real client exactly as for <c>POST /api/v1/auth/login</c>.
    /// Its other parameters are services, resolved by type as minimal APIs do.
    /// </summary>
    private static async Task<IResult> ApiLoginAsync(LoginRequest request, HttpContext http, CancellationToken ct)
    {
        Delegate login = AuthApi.LoginAsync;
        var arguments = login.Method.GetParameters().Select(p =>
            p.ParameterType == typeof(LoginRequest) ? request
            : p.ParameterType == typeof(HttpContext) ? http
            : p.ParameterType == typeof(CancellationToken) ? ct
            : http.RequestServices.GetRequiredService(p.ParameterType)).ToArray();
        var task = (Task)login.Method.Invoke(null, arguments)!;
        await task;
        var result = (IResult)task.GetType().GetProperty(nameof(Task<IResult>.Result))!.GetValue(task)!;
        return result is INestedHttpResult nested ? nested.Result : result;
    }

    private static async Task<Results<RedirectHttpResult, JsonHttpResult<ApiError>>> SignOutAsync(HttpContext http, IAntiforgery antiforgery)
    {
        // A post without our cookie has nothing to clear, and is what a form auto-submitted by another site sends (the
        // cookie is SameSite=Strict): answering it with the cookie's deletion would sign the user out all the same.
        if (!http.Request.Cookies.ContainsKey(WebAuthentication.CookieName))
            return TypedResults.LocalRedirect("/signin?signedOut=1");
        // With it, the post is our site's: a script or a page of ours without a valid token (refused), or a page whose
        // sign-in has ended since (its token made for that sign-in no longer fits), which may still clear its cookie.
        if (http.User.Identity?.IsAuthenticated == true && !await antiforgery.IsRequestValidAsync(http))
            return ApiErrors.Of(StatusCodes.Status400BadRequest, "Bad request",
                "The sign-out form has no valid antiforgery token; reload the page and sign out again.");
        await http.SignOutAsync(WebAuthentication.CookieScheme);
        return TypedResults.LocalRedirect("/signin?signedOut=1");
    }

    /// <summary>
    /// The longest typed username handed back to the form. Usernames have at most 32 characters; this leaves room for one
    /// typed with capitals or a typo, while a pasted page of text (100 000 characters gave a 300 kB Location header, which
    /// browsers and proxies refuse) is not echoed.
    /// </summary>
    private const int MaxEchoedUsernameLength = 64;

    private static RedirectHttpResult BackToSignIn(string error, string returnUrl, string? username) =>
        TypedResults.LocalRedirect(
            $"/signin?error={error}&returnUrl={Uri.EscapeDataString(returnUrl)}" +
            (username?.Trim() is { Length: > 0 and <= MaxEchoedUsernameLength } typed ? $"&username={Uri.EscapeDataString(typed)}" : ""));
}
