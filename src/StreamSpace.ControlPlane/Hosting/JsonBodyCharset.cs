using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Net.Http.Headers;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Checks the charset of a JSON request body before the framework's body reader sees it. That reader looks the charset up
/// verbatim and throws when it does not know it, so a quoted charset (<c>charset="utf-8"</c>, which HTTP allows), an empty
/// one or an unknown one (<c>charset=foo</c>) was a logged 500. A quoted known charset is unquoted in place and the request
/// goes on; an empty or unknown one is a 415 that names it. Only endpoints that take a JSON body (their
/// <see cref="IAcceptsMetadata"/>) are checked, after authorization, so a caller without rights still gets its 401 or 403.
/// </summary>
public static class JsonBodyCharset
{
    public static IApplicationBuilder UseJsonBodyCharsetChecked(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            var request = context.Request;
            if (request.ContentType is { } contentType && contentType.Contains("charset", StringComparison.OrdinalIgnoreCase)
                && context.GetEndpoint()?.Metadata.GetMetadata<IAcceptsMetadata>() is not null
                && MediaTypeHeaderValue.TryParse(contentType, out var mediaType) && mediaType.Charset.HasValue)
            {
                var charset = HeaderUtilities.RemoveQuotes(mediaType.Charset).ToString().Trim();
                if (RequestBodyText.Named(charset) is null)
                {
                    var named = charset.Length == 0 ? "an empty charset" : $"the charset '{RequestBodyText.Shorten(charset)}', which the server does not know";
                    await TypedResults.Json(new ApiError("Unsupported media type",
                        $"The request's Content-Type names {named}; send the JSON body as UTF-8 (Content-Type: application/json)."),
                        statusCode: StatusCodes.Status415UnsupportedMediaType).ExecuteAsync(context);
                    return;
                }
                if (!mediaType.Charset.Equals(charset, StringComparison.Ordinal))
                {
                    mediaType.Charset = charset;
                    request.ContentType = mediaType.ToString();
                }
            }
            await next(context);
        });
}
