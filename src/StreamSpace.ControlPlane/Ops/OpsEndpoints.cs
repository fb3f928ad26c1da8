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

    public static IEndpointRouteBuilder MapOpsEndpoints(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/healthz", () => TypedResults.Ok(new { status = "ok" })).AllowAnonymous().WithTags("Ops");
        routes.MapGet("/readyz", ReadyAsync).AllowAnonymous().WithTags("Ops");
        routes.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous();
        routes.MapOpenApi("/openapi/{documentName}.json").AllowAnonymous();
        return routes;
    }

    /// <summary>
    /// Anonymous, so a failure answers a fixed text: the driver's message names the database's host, port and user
    /// ("Failed to connect to 10.0.0.5:5432", "password authentication failed for user …"). The log has the exception.
    /// </summary>
    private static async Task<IResult> ReadyAsync(Db db, ILoggerFactory loggers, CancellationToken ct)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(3));
            await using var conn = await db.OpenAsync(timeout.Token);
            await conn.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: timeout.Token));
            return TypedResults.Ok(new { status = "ready", database = "ok" });
        }
        catch (Exception ex) when (ex is OperationCanceledException || ErrorHandling.IsDatabaseOutage(ex) || ex is System.Data.Common.DbException)
        {
            db.ClearPool();
            loggers.CreateLogger("StreamSpace.Database").LogWarning(ex, "Database unavailable while serving /readyz");
            return TypedResults.Json(new ApiError("Database unavailable", "The database cannot be reached."), statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }
}
