using Microsoft.AspNetCore.Routing.Template;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// The catch-all endpoint: answers requests no route took with a JSON error. Because a catch-all is
/// a valid candidate for every request, routing hands it the requests it would otherwise answer
/// itself with 405 (wrong method) or 415 (a body endpoint sent a non-JSON content type); this tells
/// those apart from a truly unknown path so the client learns what is really wrong.
/// </summary>
public static class UnmatchedRequests
{
    public static IEndpointRouteBuilder MapUnmatchedRequests(this IEndpointRouteBuilder routes)
    {
        routes.MapFallback(Answer).AllowAnonymous().ExcludeFromDescription();
        // The default fallback's {*path:nonfile} leaves out paths whose last segment has a dot (/api/v1/x.json,
        // /api/v1/agents/worker.1): under /api every path gets the same JSON 404 or 405, whoever asks.
        routes.MapFallback("/api/{**path}", Answer).AllowAnonymous().ExcludeFromDescription();
        return routes;
    }

    private static IResult Answer(HttpContext http, EndpointDataSource endpoints)
    {
        // A request for the server as a whole ("OPTIONS *") has an empty path; it is matched as the root.
        var path = http.Request.Path.HasValue ? http.Request.Path.Value! : "/";
        var methods = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var endpoint in endpoints.Endpoints.OfType<RouteEndpoint>())
        {
            if (endpoint.Order == int.MaxValue || endpoint.RoutePattern.RawText is not { } raw || raw.Contains("{*", StringComparison.Ordinal)) continue;
            var matcher = new TemplateMatcher(TemplateParser.Parse(raw), new RouteValueDictionary());
            if (!matcher.TryMatch(path, new RouteValueDictionary())) continue;
            foreach (var m in endpoint.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? []) methods.Add(m);
        }
        if (methods.Count == 0)
            return TypedResults.Json(new ApiError("Not found", $"No route for {http.Request.Method} {path}."), statusCode: StatusCodes.Status404NotFound);
        if (methods.Contains(http.Request.Method))
            return TypedResults.Json(new ApiError("Unsupported media type",
                $"{http.Request.Method} {path} takes a JSON body: send it with Content-Type: application/json."), statusCode: StatusCodes.Status415UnsupportedMediaType);
        http.Response.Headers.Allow = string.Join(", ", methods.Order());
        return TypedResults.Json(new ApiError("Method not allowed",
            $"{path} does not accept {http.Request.Method}; it accepts {string.Join(", ", methods.Order())}."), statusCode: StatusCodes.Status405MethodNotAllowed);
    }
}
