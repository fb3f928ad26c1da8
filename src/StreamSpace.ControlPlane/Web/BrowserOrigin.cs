using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Streaming;

namespace StreamSpace.ControlPlane.Web;

/// <summary>
/// The one rule for whether a browser request comes from a page of this control plane: applied to the Blazor hub
/// (<c>/_blazor</c>, which runs the UI as whoever's cookie comes along), to API writes made with the sign-in cookie,
/// and to the viewer WebSocket. SameSite=Strict does not cover it: a page on another port of the same host is the
/// same site, so the browser sends it the cookie.
/// </summary>
/// <remarks>
/// In order: an Origin listed in <see cref="StreamingOptions.AllowedOrigins"/> is allowed (the operator's word, e.g. the
/// public https origin of a TLS proxy); otherwise a <c>Sec-Fetch-Site</c> header decides alone and must be
/// <c>same-origin</c> (no page script can set it, and behind a TLS-terminating proxy the browser's https origin arrives
/// here as an http request, which the Origin comparison below would refuse); otherwise a request without Origin is
/// allowed: browsers send Origin on every WebSocket handshake and on every cross-origin or POST fetch, so such a request
/// comes from a program, which could send any Origin anyway and must hold the cookie or ticket itself; otherwise the
/// Origin must be this request's own scheme://host[:port].
/// </remarks>
internal static class BrowserOrigin
{
    /// <summary>Prefix of every Blazor hub transport: the WebSocket, negotiate, long polling, server-sent events, disconnect.</summary>
    private const string BlazorHubPath = "/_blazor";

    public static bool IsAllowed(HttpRequest request, IReadOnlyList<string> allowedOrigins)
    {
        var origin = request.Headers.Origin.ToString();
        Uri.TryCreate(origin, UriKind.Absolute, out var presented);
        if (presented is not null)
        {
            foreach (var extra in allowedOrigins)
            {
                if (Uri.TryCreate(extra, UriKind.Absolute, out var allowed) && SameOrigin(presented, allowed)) return true;
            }
        }
        if (request.Headers["Sec-Fetch-Site"].ToString() is { Length: > 0 } site) return site == "same-origin";
        if (origin.Length == 0) return true;
        return presented is not null
            && Uri.TryCreate($"{request.Scheme}://{request.Host.Value}", UriKind.Absolute, out var own)
            && SameOrigin(presented, own);
    }

    /// <summary><see cref="IsAllowed(HttpRequest, IReadOnlyList{string})"/> with the configured allowed origins.</summary>
    public static bool IsAllowed(HttpRequest request) =>
        IsAllowed(request, request.HttpContext.RequestServices.GetRequiredService<IOptions<StreamingOptions>>().Value.AllowedOrigins);

    /// <summary>
    /// Answers 403 to any request under <c>/_blazor</c> from another origin, before the hub sees it: the hub itself is
    /// anonymous (the sign-in page loads its script), so nothing else stands between a foreign page and a circuit.
    /// </summary>
    public static IApplicationBuilder UseBlazorHubOriginCheck(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments(BlazorHubPath) && !IsAllowed(context.Request))
            {
                context.Response.StatusCode = StatusCodes.Status403Forbidden;
                await context.Response.WriteAsJsonAsync(
                    new ApiError("Origin not allowed", "Only pages of this StreamSpace site may connect to its web UI."), context.RequestAborted);
                return;
            }
            await next(context);
        });

    /// <summary>Scheme, host and port compared as RFC 6454 does (default ports made explicit by Uri).</summary>
    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.IdnHost, b.IdnHost, StringComparison.OrdinalIgnoreCase)
        && a.Port == b.Port;
}
