using System.Net;
using Microsoft.Extensions.Logging;
using Npgsql;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The control plane on PostgreSQL with a pool of 3 connections and Npgsql's own wait for a free one at 1 s, so an API
/// request meets an exhausted pool quickly.
/// </summary>
public sealed class ExhaustedPoolPostgresControlPlane() : ControlPlaneFixture(DatabaseKind.Postgres)
{
    public CapturedLog Log { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<ILoggerProvider>(Log);

    protected override IEnumerable<string> ExtraArgs =>
        [$"--StreamSpace:Database={new NpgsqlConnectionStringBuilder(Database.Target.ConnectionString) { MaxPoolSize = 3, Timeout = 1 }}"];
}

/// <summary>
/// An API request that finds every pooled connection in use (the control plane under load, the database fine) is a 503
/// "Database busy" that leaves the pool alone: clearing it would close every connection the busy requests hand back.
/// </summary>
public sealed class ApiBusyPoolTests(ExhaustedPoolPostgresControlPlane cp) : IClassFixture<ExhaustedPoolPostgresControlPlane>
{
    [Fact]
    public async Task A_request_that_finds_every_pooled_connection_in_use_is_503_database_busy_and_the_pool_is_kept()
    {
        var admin = await cp.AdminClientAsync();
        var held = await BusyPool.HoldEveryConnectionAsync(cp.Db);
        try
        {
            var response = await admin.GetAsync("/api/v1/sessions", TestContext.Current.CancellationToken);
            var body = await response.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
            body.GetProperty("error").GetString().ShouldBe("Database busy");
            response.Headers.RetryAfter.ShouldNotBeNull();
        }
        finally
        {
            await BusyPool.ReleaseAsync(held);
        }

        await BusyPool.ShouldStillPoolAsync(cp.Db, held);
        cp.Log.Entries.ShouldNotContain(e => e.Message.Contains("Database unavailable", StringComparison.Ordinal));
        cp.Log.Entries.ShouldContain(e => e.Message.StartsWith("No database connection became free while serving /api/v1/sessions", StringComparison.Ordinal));
        (await admin.GetAsync("/api/v1/sessions", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }
}
