using System.Net.Mime;

namespace StreamSpace.ControlPlane.Web;

/// <summary>
/// Unknown addresses: API clients keep the JSON 404 of the catch-all fallback; a browser asking for a page gets
/// a small HTML page in words with a way back instead of raw JSON.
/// </summary>
public static class BrowserNotFound
{
    /// <summary>The pattern of the control plane's catch-all JSON fallback (<c>MapFallback</c>).</summary>
    private const string CatchAllPattern = "{*path:nonfile}";

    private const string Page = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1.0" />
        <title>Not found · StreamSpace</title>
        <style>body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1c2330;margin:0}main{max-width:32rem;margin:4rem auto;padding:1.5rem;background:#fff;border:1px solid #d9dee6;border-radius:6px}a{color:#1f5fbf}</style>
        </head><body><main><h1>Page not found</h1><p>There is nothing at this address.</p>
        <p><a href="/">Back to the catalog</a> · <a href="/sessions">My sessions</a></p></main></body></html>
        """;

    public static IApplicationBuilder UseBrowserNotFoundPage(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            if (IsBrowserPageMiss(context))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                context.Response.ContentType = MediaTypeNames.Text.Html + "; charset=utf-8";
                await context.Response.WriteAsync(Page, context.RequestAborted);
                return;
            }
            await next(context);
        });

    private static bool IsBrowserPageMiss(HttpContext context) =>
        HttpMethods.IsGet(context.Request.Method)
        && context.GetEndpoint() is RouteEndpoint { RoutePattern.RawText: CatchAllPattern }
        && !context.Request.Path.StartsWithSegments("/api")
        && context.Request.Headers.Accept.ToString().Contains(MediaTypeNames.Text.Html, StringComparison.OrdinalIgnoreCase);
}
