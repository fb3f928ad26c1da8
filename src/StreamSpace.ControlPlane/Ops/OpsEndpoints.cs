using Dapper;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Ops;

/// <summary><c>/healthz</c>, <c>/readyz</c>, <c>/metrics</c> (Prometheus via OpenTelemetry) and <c>/openapi/v1.json</c>.</summary>
public static class OpsEndpoints
{
    public const string MeterName = "StreamSpace.ControlPlane";
    /// <summary>The OpenTelemetry <c>service.name</c> every metric (and trace) of the control plane carries.</summary>
    public const string ServiceName = "streamspace-control-plane";

    public static IServiceCollection AddStreamSpaceOps(this IServiceCollection services)
    {
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(ServiceName, serviceVersion: typeof(OpsEndpoints).Assembly.GetName().Version?.ToString()))
            .WithMetrics(m => m
            .AddAspNetCoreInstrumentation()
            .AddRuntimeInstrumentation()
            .AddMeter(MeterName)
            .AddPrometheusExporter());
        return services;
    }

    /// <summary>The methods of a read-only endpoint that a probe or a link checker may use.</summary>
    internal static readonly string[] GetOrHead = [HttpMethods.Get, HttpMethods.Head];

    public static IEndpointRouteBuilder MapOpsEndpoints(this IEndpointRouteBuilder routes)
    {
        // HEAD as well: uptime monitors and load balancers probe with it (Kestrel sends no body then).
        routes.MapMethods("/healthz", GetOrHead, () => TypedResults.Ok(new { status = "ok" })).AllowAnonymous().WithTags("Ops");
        routes.MapMethods("/readyz", GetOrHead, ReadyAsync).AllowAnonymous().WithTags("Ops");
        routes.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous();
        routes.MapOpenApi("/openapi/{documentName}.json").AllowAnonymous();
        return routes;
    }

    /// <summary>
    /// How long <c>/readyz</c> waits for a database connection, and then again for its <c>SELECT 1</c>. Longer than a
    /// Kubernetes probe's default timeout (1 s), so under load it is the prober that gives up first, not the answer.
    /// </summary>
    public static readonly TimeSpan ReadinessDatabaseTimeout = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Anonymous, so a failure answers a fixed text: the driver's message names the database's host, port and user
    /// ("Failed to connect to 10.0.0.5:5432", "password authentication failed for user …"). The log has the exception.
    /// The pool is cleared only when the database failed us, never because the pool is busy or the prober hung up:
    /// clearing closes every connection the busy requests hand back, and a probe every second would do that all day.
    /// </summary>
    private static async Task<IResult> ReadyAsync(Db db, ILoggerFactory loggers, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ReadinessDatabaseTimeout);
        var connected = false;
        try
        {
            await using var conn = await db.OpenAsync(timeout.Token);
            connected = true;
            timeout.CancelAfter(ReadinessDatabaseTimeout); // the wait for a free connection is not the database's time
            await conn.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: timeout.Token));
            return TypedResults.Ok(new { status = "ready", database = "ok" });
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // The prober hung up: that says nothing about the database, and nobody reads an answer. Passed on without the
            // driver's exception, which the API's error handling would take for an outage.
            throw new OperationCanceledException(ct);
        }
        catch (Exception ex) when (!connected && IsTimeout(ex))
        {
            // Every pooled connection is in use, or a new one did not open in time (Npgsql opens one only when none is idle,
            // so a database that stopped answering looks the same here): there is no idle connection to clear either way,
            // and busy ones are fine. Said as both, and as a warning: it may be an outage.
            loggers.CreateLogger("StreamSpace.Database").LogWarning(
                "No database connection within {Seconds} s while serving /readyz: every pooled connection is in use, or the database does not answer",
                ReadinessDatabaseTimeout.TotalSeconds);
            return TypedResults.Json(
                new ApiError("Database busy", $"No database connection within {ReadinessDatabaseTimeout.TotalSeconds:0} seconds: every pooled connection is in use, or the database does not answer."),
                statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        catch (Exception ex) when (ex is OperationCanceledException || ErrorHandling.IsDatabaseOutage(ex) || ex is System.Data.Common.DbException)
        {
            db.ClearPool();
            loggers.CreateLogger("StreamSpace.Database").LogWarning(ex, "Database unavailable while serving /readyz");
            return TypedResults.Json(new ApiError("Database unavailable", "The database cannot be reached."), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    /// <summary>Our own time ran out, or Npgsql's (its <c>Timeout</c> setting, when shorter: "The connection pool has been exhausted").</summary>
    private static bool IsTimeout(Exception ex) => ex is OperationCanceledException || ErrorHandling.IsPoolExhausted(ex);
}
