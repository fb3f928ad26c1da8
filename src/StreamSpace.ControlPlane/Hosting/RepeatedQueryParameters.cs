namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Refuses an API request that names a query parameter more than once (<c>?user=a&amp;user=b</c>). A handler's
/// <c>string?</c> parameter receives such values joined with a comma, so each endpoint saw a value nobody sent: the audit
/// filtered by the user "a,b" and answered an empty page, a <c>?force=true&amp;force=true</c> was told "must be true or
/// false". No API endpoint takes a list in its query string, so the one rule is: each parameter at most once, else 400.
/// Runs after authorization, so an anonymous or non-admin caller still gets its 401 or 403 first, and only for the API's
/// own endpoints: an unknown path keeps its 404.
/// </summary>
public static class RepeatedQueryParameters
{
    private const string Problem = "appears more than once in the query string";

    public static IApplicationBuilder UseRepeatedQueryParametersRefused(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            if (context.Request.QueryString.HasValue && context.Request.Path.StartsWithSegments("/api")
                && context.GetEndpoint() is RouteEndpoint { Order: < int.MaxValue }
                && context.Request.Query.Where(p => p.Value.Count > 1).Select(p => p.Key).Order(StringComparer.Ordinal).ToList() is [_, ..] repeated)
            {
                // Worded as a body's field given twice is (ErrorHandling): the same mistake, in another part of the request.
                await TypedResults.Json(new ApiError("Invalid request", string.Join(" ", repeated.Select(n => $"'{n}' {Problem}.")))
                {
                    Fields = repeated.ToDictionary(name => name, _ => Problem, StringComparer.Ordinal),
                }, statusCode: StatusCodes.Status400BadRequest).ExecuteAsync(context);
                return;
            }
            await next(context);
        });
}
