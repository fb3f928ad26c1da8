using Microsoft.AspNetCore.Http.Features;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// A request whose path and query are longer than <see cref="MaxBytes"/> gets a JSON 414 naming both lengths. Kestrel's
/// own refusal of a long request line (its default limit is 8 KiB) was a bare 414 without a body; Kestrel now takes lines
/// up to <see cref="KestrelMaxRequestLine"/> and this answers the ones above 8 KiB as every other bad input is answered
/// (only a line longer than that still gets Kestrel's bare 414). 8 KiB stays the longest address the app ever sees, which
/// <see cref="Web.LocalUrl.MaxLength"/> relies on.
/// </summary>
public static class RequestTargetLimit
{
    /// <summary>The longest path and query taken, in bytes (as sent, percent-escapes included).</summary>
    public const int MaxBytes = 8 * 1024;

    /// <summary>Kestrel's request-line limit: above it Kestrel refuses the request itself, before any middleware.</summary>
    public const int KestrelMaxRequestLine = 64 * 1024;

    public static IApplicationBuilder UseRequestTargetLimit(this IApplicationBuilder app) =>
        app.Use((context, next) =>
        {
            var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
            if (target is not { Length: > MaxBytes }) return next(context);
            // The connection may carry more requests; the body of this one is not read.
            return ErrorHandling.WriteAsync(context, StatusCodes.Status414RequestUriTooLong, new ApiError("URI too long",
                $"The request's path and query are {target.Length} bytes long; at most {MaxBytes} are taken. Send long input in a request body."));
        });
}
