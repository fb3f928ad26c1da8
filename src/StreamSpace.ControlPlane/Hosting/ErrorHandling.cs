using System.Text.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Turns every failure into a JSON <see cref="ApiError"/>: body binding errors and text the database refused (a NUL,
/// or longer than its column) into 400, oversized bodies into 413, an unreachable database into 503. Nothing reaches
/// the client as an empty 500.
/// </summary>
public static class ErrorHandling
{
    public static IApplicationBuilder UseApiErrorHandling(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            try
            {
                if (await RefusedOversizedBodyAsync(context)) return;
                await next(context);
                // Some framework paths answer an error status with an empty body instead of throwing:
                // minimal APIs swallow a body read that fails (BadHttpRequestException is an IOException)
                // after setting 413, and routing answers 405 bare. Give those the JSON body too.
                if (!context.Response.HasStarted && context.Response.StatusCode >= 400
                    && context.Response.ContentType is null && context.Response.ContentLength is null)
                    await WriteAsync(context, context.Response.StatusCode, ForBareStatus(context, context.Response.StatusCode));
            }
            catch (BadHttpRequestException ex) when (!context.Response.HasStarted)
            {
                await WriteAsync(context, ex.StatusCode, ex.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? new ApiError("Payload too large", TooLargeMessage(context))
                    : Describe(ex, context));
            }
            catch (Exception ex) when (IsPoolExhausted(ex) && !context.Response.HasStarted)
            {
                // The database is fine and every connection is in use by other requests: clearing the pool (below) would
                // close each of them as it comes back and make every next request open a new one, under the very load
                // that exhausted it.
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("StreamSpace.Database")
                    .LogWarning("No database connection became free while serving {Path}: every pooled connection is in use " +
                                "(raise 'Maximum Pool Size' in STREAMSPACE_DATABASE, or add replicas)", context.Request.Path);
                context.Response.Headers.RetryAfter = "1";
                await WriteAsync(context, StatusCodes.Status503ServiceUnavailable,
                    new ApiError("Database busy", "Every database connection is in use; try again shortly."));
            }
            catch (Exception ex) when (IsDatabaseOutage(ex) && !context.Response.HasStarted)
            {
                context.RequestServices.GetRequiredService<Data.RequestOutageLog>().Failed(context.Request.Path, ex);
                context.RequestServices.GetRequiredService<Data.Db>().ClearPool();
                context.Response.Headers.RetryAfter = "5";
                await WriteAsync(context, StatusCodes.Status503ServiceUnavailable,
                    new ApiError("Database unavailable", "The database cannot be reached right now; try again shortly."));
            }
            catch (Exception ex) when (RefusedTextMessage(ex) is { } message && !context.Response.HasStarted)
            {
                // Input validation refuses such text where it enters; this is the net for a place it missed.
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("StreamSpace.Errors")
                    .LogWarning(ex, "The database refused text of a request to {Method} {Path}", context.Request.Method, context.Request.Path);
                await WriteAsync(context, StatusCodes.Status400BadRequest, new ApiError("Invalid request", message));
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // The client went away; nothing to answer.
            }
            catch (Exception ex) when (!context.Response.HasStarted)
            {
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("StreamSpace.Errors")
                    .LogError(ex, "Unhandled error serving {Method} {Path}", context.Request.Method, context.Request.Path);
                await WriteAsync(context, StatusCodes.Status500InternalServerError,
                    new ApiError("Internal error", "Something went wrong on the server; the error was logged."));
            }
        });

    /// <summary>How much of a refused body is read and discarded so the client can read the 413.</summary>
    private const long DrainLimitBytes = 8 * 1024 * 1024;
    private static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A body whose declared length is over the limit is refused before anything reads it. What the client is still
    /// sending is read and discarded first (bounded in bytes and time): a server that closes a connection with unread
    /// request bytes resets it, and the client then sees "broken pipe" or "connection reset" instead of the 413.
    /// </summary>
    private static async Task<bool> RefusedOversizedBodyAsync(HttpContext context)
    {
        var limit = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
        if (context.Request.ContentLength is not { } length || limit is not { IsReadOnly: false, MaxRequestBodySize: { } max } || length <= max)
            return false;
        if (length <= DrainLimitBytes)
        {
            limit.MaxRequestBodySize = DrainLimitBytes;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            timeout.CancelAfter(DrainTime);
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                while (await context.Request.Body.ReadAsync(buffer, timeout.Token) > 0)
                {
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
                // Too slow or gone: answer anyway (the connection closes after this response).
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        context.Response.Headers.Connection = "close";
        await WriteAsync(context, StatusCodes.Status413PayloadTooLarge, new ApiError("Payload too large", TooLargeMessage(context)));
        return true;
    }

    private static string TooLargeMessage(HttpContext context) =>
        $"The request body is larger than the limit of {context.RequestServices.GetRequiredService<IOptions<StreamSpaceOptions>>().Value.MaxRequestBodyBytes} bytes.";

    private static ApiError ForBareStatus(HttpContext context, int status) => status switch
    {
        StatusCodes.Status413PayloadTooLarge => new ApiError("Payload too large", TooLargeMessage(context)),
        StatusCodes.Status405MethodNotAllowed => new ApiError("Method not allowed", "This route does not accept that HTTP method."),
        StatusCodes.Status415UnsupportedMediaType => new ApiError("Unsupported media type", "Send the request body as application/json."),
        StatusCodes.Status400BadRequest => new ApiError("Invalid request", "The request could not be read."),
        _ => new ApiError(ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } phrase ? phrase : "Error", $"The request failed with status {status}."),
    };

    /// <summary>
    /// Npgsql found no free connection in its pool within its <c>Timeout</c> (every one in use): the control plane is busy,
    /// the database is not unreachable. Told by Npgsql's message, its only marker.
    /// </summary>
    public static bool IsPoolExhausted(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
            if (e is Npgsql.NpgsqlException && e is not Npgsql.PostgresException
                && e.Message.StartsWith("The connection pool has been exhausted", StringComparison.Ordinal))
                return true;
        return false;
    }

    public static bool IsDatabaseOutage(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (Data.Db.IsRetryableConflict(e))
                return false; // a lost race, not an outage: see Db.InTransactionAsync
            if (e is Npgsql.NpgsqlException { IsTransient: true } or Npgsql.PostgresException { SqlState: "57P01" or "57P02" or "57P03" or "53300" or "08006" or "08001" })
                return true;
            if (e is Npgsql.NpgsqlException && e is not Npgsql.PostgresException)
                return true;
            if (e is Microsoft.Data.Sqlite.SqliteException { SqliteErrorCode: 5 or 6 or 10 or 14 }) // BUSY, LOCKED, IOERR, CANTOPEN
                return true;
            if (e is TimeoutException or System.Net.Sockets.SocketException)
                return true;
        }
        return false;
    }

    /// <summary>
    /// What the client is told when PostgreSQL refused a text value: U+0000 (22021, "invalid byte sequence for encoding UTF8: 0x00"), a character
    /// the database's encoding lacks (22P05), or text longer than its <c>varchar(n)</c> column (22001, "value too long for
    /// type character varying(n)"; SQLite stores it). The request's fault, not the database's: a 400, never a 500 or a 503. Null for any other failure.
    /// </summary>
    private static string? RefusedTextMessage(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is Npgsql.PostgresException { SqlState: "22021" or "22P05" })
                return "The request contains text the database cannot store, such as the character U+0000 (NUL).";
            if (e is Npgsql.PostgresException { SqlState: "22001" })
                return "The request contains text longer than the database stores for its field.";
        }
        return null;
    }

    /// <summary>A body the endpoint could not bind, in the API's words (see <see cref="JsonErrorText"/>).</summary>
    private static ApiError Describe(BadHttpRequestException ex, HttpContext context)
    {
        if (ex.InnerException is not JsonException json) return new ApiError("Invalid request", ex.Message);
        var bodyType = context.GetEndpoint()?.Metadata.GetMetadata<IAcceptsMetadata>()?.RequestType;
        var options = context.RequestServices.GetService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>()?.Value.SerializerOptions;
        var (message, field, problem) = JsonErrorText.Describe(json, bodyType, options);
        return new ApiError("Invalid request", message)
        {
            Fields = field is not null && problem is not null ? new Dictionary<string, string> { [field] = problem } : null,
        };
    }

    public static Task WriteAsync(HttpContext context, int status, ApiError error)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(error, context.RequestAborted);
    }
}
