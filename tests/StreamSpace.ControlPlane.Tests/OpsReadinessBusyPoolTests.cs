using System.Data.Common;
using System.Diagnostics;
using System.Net;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Ops;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The control plane on PostgreSQL with a pool of <see cref="PoolSize"/> connections, so a test can hold every free one.</summary>
public sealed class SmallPoolPostgresControlPlane() : ControlPlaneFixture(DatabaseKind.Postgres)
{
    public const int PoolSize = 3;

    /// <summary>Everything the app logs: warnings and up, and ASP.NET Core's "Request finished" lines.</summary>
    public CapturedLog Log { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<ILoggerProvider>(Log);

    protected override IEnumerable<string> ExtraArgs =>
    [
        // Npgsql's own wait for a free connection longer than /readyz's, so it is /readyz's that runs out.
        $"--StreamSpace:Database={new NpgsqlConnectionStringBuilder(Database.Target.ConnectionString) { MaxPoolSize = PoolSize, Timeout = 60 }}",
        "--Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics=Information",
    ];
}

/// <summary>
/// <c>/readyz</c> while every pooled connection is busy (the control plane under load): it neither clears the pool nor
/// reports the database unavailable, whether the prober hangs up first (a Kubernetes probe's 1 s timeout) or waits for
/// the answer. Clearing would close every connection the busy requests hand back.
/// </summary>
public sealed class OpsReadinessBusyPoolTests(SmallPoolPostgresControlPlane cp) : IClassFixture<SmallPoolPostgresControlPlane>
{
    [Fact]
    public async Task A_prober_that_hangs_up_while_the_pool_is_busy_leaves_the_pool_and_the_log_alone()
    {
        var held = await BusyPool.HoldEveryConnectionAsync(cp.Db);
        try
        {
            var finished = FinishedReadyz();
            using var probeTimeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            probeTimeout.CancelAfter(TimeSpan.FromSeconds(1));
            await Should.ThrowAsync<OperationCanceledException>(() => cp.Client().GetAsync("/readyz", probeTimeout.Token));
            // Until the control plane saw the hang-up and ended the request: 499, not its own 3 s running out (503).
            await WaitUntilAsync(() => FinishedReadyz() > finished, TimeSpan.FromSeconds(30));
            cp.Log.Entries.Last(e => IsFinishedReadyz(e.Message)).Message.ShouldContain(" - 499 ");
        }
        finally
        {
            await BusyPool.ReleaseAsync(held);
        }

        await BusyPool.ShouldStillPoolAsync(cp.Db, held);
        ShouldNotHaveReportedAnOutage();
    }

    [Fact]
    public async Task A_prober_that_waits_while_the_pool_is_busy_gets_503_database_busy_and_the_pool_is_kept()
    {
        var held = await BusyPool.HoldEveryConnectionAsync(cp.Db);
        try
        {
            var watch = Stopwatch.StartNew();
            var response = await cp.Client().GetAsync("/readyz", TestContext.Current.CancellationToken);
            var body = await response.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
            body.GetProperty("error").GetString().ShouldBe("Database busy");
            // Npgsql opens a new connection only when none is idle, so a database that stopped answering looks the same.
            body.GetProperty("message").GetString().ShouldBe("No database connection within 3 seconds: every pooled connection is in use, or the database does not answer.");
            cp.Log.Entries.ShouldContain(e => e.Level == LogLevel.Warning && e.Message.StartsWith("No database connection within 3 s while serving /readyz", StringComparison.Ordinal));
            watch.Elapsed.ShouldBeGreaterThanOrEqualTo(OpsEndpoints.ReadinessDatabaseTimeout - TimeSpan.FromMilliseconds(100));
            watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10));
        }
        finally
        {
            await BusyPool.ReleaseAsync(held);
        }

        await BusyPool.ShouldStillPoolAsync(cp.Db, held);
        ShouldNotHaveReportedAnOutage();
        (await cp.Client().GetAsync("/readyz", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    private void ShouldNotHaveReportedAnOutage()
    {
        var outages = cp.Log.Entries.Where(e => e.Message.Contains("Database unavailable", StringComparison.Ordinal)).ToList();
        outages.ShouldBeEmpty($"reported as an outage: {string.Join(" | ", outages.Select(e => e.Message))}");
    }

    private int FinishedReadyz() => cp.Log.Entries.Count(e => IsFinishedReadyz(e.Message));

    private static bool IsFinishedReadyz(string message) =>
        message.StartsWith("Request finished", StringComparison.Ordinal) && message.Contains("/readyz", StringComparison.Ordinal);

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan limit)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            watch.Elapsed.ShouldBeLessThan(limit, "the control plane did not finish the request");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }
}

/// <summary>Holding every free connection of a control plane's pool, and checking afterwards that it was not cleared.</summary>
internal static class BusyPool
{
    /// <summary>
    /// Every connection of the app's pool that is free (its notification listener keeps one for itself), taken from its
    /// <see cref="Db"/> until one more is not to be had, with the server process behind each.
    /// </summary>
    public static async Task<List<(DbConnection Connection, int BackendPid)>> HoldEveryConnectionAsync(Db db)
    {
        var held = new List<(DbConnection, int)>();
        while (true)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            wait.CancelAfter(TimeSpan.FromMilliseconds(500));
            DbConnection conn;
            try
            {
                conn = await db.OpenAsync(wait.Token);
            }
            catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
            {
                held.ShouldNotBeEmpty("the test got no connection of the pool");
                return held;
            }
            held.Add((conn, await conn.ExecuteScalarAsync<int>("SELECT pg_backend_pid()")));
        }
    }

    public static async Task ReleaseAsync(List<(DbConnection Connection, int BackendPid)> held)
    {
        foreach (var (conn, _) in held) await conn.DisposeAsync();
    }

    /// <summary>
    /// The connections handed back are pooled still: a cleared pool closes them as they come back, and the next one
    /// opened is a new server process.
    /// </summary>
    public static async Task ShouldStillPoolAsync(Db db, List<(DbConnection Connection, int BackendPid)> held)
    {
        await using var conn = await db.OpenAsync(TestContext.Current.CancellationToken);
        var pid = await conn.ExecuteScalarAsync<int>("SELECT pg_backend_pid()");
        held.Select(h => h.BackendPid).ShouldContain(pid, "the pool was cleared: a new connection was opened instead of a pooled one");
    }
}
