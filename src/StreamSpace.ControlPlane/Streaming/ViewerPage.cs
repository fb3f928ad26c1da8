using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.FileProviders;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// The noVNC viewer page <c>GET /sessions/{id}/view</c> and its static assets under <c>/viewer/</c>:
/// the page in Streaming/Viewer/wwwroot plus noVNC's core/ and vendor/, copied from npm at build time
/// into the output folder <c>viewer/</c> (no CDN at run time).
/// </summary>
public static class ViewerPage
{
    public const string AssetsPath = "/viewer";

    /// <summary>
    /// Same-origin only; noVNC sets a canvas-drawn cursor (data: URL) and decodes images from blobs.
    /// connect-src 'self' covers same-origin ws:/wss: in current browsers.
    /// </summary>
    private const string ContentSecurityPolicy =
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

    public static IEndpointRouteBuilder MapViewerPage(this IEndpointRouteBuilder routes)
    {
        // Missing only when the build's npm step did not run; the API still works, the page answers 404.
        IFileProvider files = Directory.Exists(ViewerRoot()) ? new PhysicalFileProvider(ViewerRoot()) : new NullFileProvider();
        var types = new FileExtensionContentTypeProvider();

        // Anonymous: the page shell holds nothing secret; it signs in to the API with the user's own
        // credentials (cookie or stored bearer token) to get a viewer ticket.
        routes.MapMethods("/sessions/{id}/view", Ops.OpsEndpoints.GetOrHead, (string id, HttpContext http) => ServeFile(http, files, types, "index.html", cache: false))
            .AllowAnonymous().ExcludeFromDescription();
        routes.MapMethods(AssetsPath + "/{**path}", Ops.OpsEndpoints.GetOrHead, (string? path, HttpContext http) => ServeFile(http, files, types, path ?? "", cache: true))
            .AllowAnonymous().ExcludeFromDescription();
        return routes;
    }

    internal static string ViewerRoot() => Path.Combine(AppContext.BaseDirectory, "viewer");

    private static IResult ServeFile(HttpContext http, IFileProvider files, FileExtensionContentTypeProvider types, string path, bool cache)
    {
        // PhysicalFileProvider refuses paths that leave its root ("..", absolute paths).
        var file = files.GetFileInfo(path);
        if (path.Length == 0 || !file.Exists || file.IsDirectory || file.PhysicalPath is null)
            return TypedResults.Json(new Hosting.ApiError("Not found", $"No viewer asset '{path}'."), statusCode: StatusCodes.Status404NotFound);
        if (!types.TryGetContentType(file.Name, out var contentType)) contentType = "application/octet-stream";
        http.Response.Headers.CacheControl = cache ? "public, max-age=300" : "no-store";
        http.Response.Headers.XContentTypeOptions = "nosniff";
        http.Response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        return TypedResults.PhysicalFile(file.PhysicalPath, contentType, enableRangeProcessing: false);
    }
}
