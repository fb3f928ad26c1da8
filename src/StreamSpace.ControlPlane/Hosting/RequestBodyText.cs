using System.Text;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Net.Http.Headers;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// A request body read as text in the charset its Content-Type names (UTF-8 when it names none), for the endpoints that
/// read their body themselves (templates take YAML as well as JSON). Decoded strictly: bytes that are not valid in that
/// charset are a 400 saying so, never replaced by U+FFFD and stored (a Latin-1 "Café" sent without its charset was
/// saved as "Caf\uFFFD"); an empty or unknown charset is a 415 naming it, as <see cref="JsonBodyCharset"/> answers for
/// the others. The body is bounded by the server's request body limit (413 beyond).
/// </summary>
public static class RequestBodyText
{
    public static async Task<(string? Text, JsonHttpResult<ApiError>? Error)> ReadAsync(HttpRequest request, string what, CancellationToken ct)
    {
        Encoding encoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        if (MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType) && mediaType.Charset.HasValue)
        {
            var charset = HeaderUtilities.RemoveQuotes(mediaType.Charset).ToString().Trim();
            if (Named(charset) is not { } named)
            {
                var which = charset.Length == 0 ? "an empty charset" : $"the charset '{Shorten(charset)}', which the server does not know";
                return (null, TypedResults.Json(new ApiError("Unsupported media type",
                    $"The request's Content-Type names {which}; send the {what} as UTF-8 (or name the charset it is in)."),
                    statusCode: StatusCodes.Status415UnsupportedMediaType));
            }
            encoding = named;
        }
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        // A byte order mark is not part of the text (YAML and JSON readers skip it too).
        var preamble = encoding.Preamble;
        if (preamble.Length > 0 && bytes.StartsWith(preamble)) bytes = bytes[preamble.Length..];
        else if (encoding is UTF8Encoding && bytes.StartsWith(Encoding.UTF8.Preamble)) bytes = bytes[Encoding.UTF8.Preamble.Length..];
        try
        {
            return (encoding.GetString(bytes), null);
        }
        catch (DecoderFallbackException ex)
        {
            var at = ex.Index >= 0 ? $" at byte {ex.Index + (buffer.Length - bytes.Length)}" : "";
            var problem = $"is not valid {encoding.WebName}{at}";
            return (null, ApiErrors.BadRequest(
                $"The request body {problem}: send the {what} as UTF-8, or name the charset it is in (e.g. Content-Type: application/yaml; charset=iso-8859-1).",
                new Dictionary<string, string> { ["body"] = problem }));
        }
    }

    /// <summary>The encoding <paramref name="charset"/> names, throwing on bytes it cannot decode; null when empty or unknown.</summary>
    internal static Encoding? Named(string charset)
    {
        if (charset.Length == 0) return null;
        try
        {
            return Encoding.GetEncoding(charset, EncoderFallback.ExceptionFallback, DecoderFallback.ExceptionFallback);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>A header can be kilobytes long: the message echoes at most 64 characters of it.</summary>
    internal static string Shorten(string value) => value.Length <= 64 ? value : string.Concat(value.AsSpan(0, 64), "…");
}
