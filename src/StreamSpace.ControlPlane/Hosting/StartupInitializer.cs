using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Templates;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Everything that must happen before the first request: wait for the database, apply migrations,
/// load the signing key and the Data Protection key ring, create the admin, seed the catalog. Runs in <c>StartingAsync</c>, before
/// Kestrel listens and before other hosted services start.
/// </summary>
public sealed class StartupInitializer(IServiceProvider services, Db db, TimeProvider time, ILogger<StartupInitializer> logger)
    : IHostedLifecycleService
{
    /// <summary>How long the start waits for its database (a server starting alongside, a failover) before it gives up.</summary>
    private static readonly TimeSpan DatabaseWait = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan DatabaseRetryDelay = TimeSpan.FromSeconds(1);

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        logger.LogInformation("Using database {Database}", db.Target.Describe());
        if (db.Kind == DatabaseKind.Sqlite)
        {
            var path = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(db.Target.ConnectionString).DataSource;
            foreach (var (file, was, now) in SqliteFileProtection.Apply(path))
            {
                logger.LogWarning("{File} was open to other accounts (mode {Was}); now {Now}: it holds the token signing key and password hashes",
                    file, Convert.ToString((int)was, 8), Convert.ToString((int)now, 8));
            }
        }
        await WaitForDatabaseAsync(cancellationToken);
        await MigrateAsync(cancellationToken);
        await services.GetRequiredService<SigningKeyProvider>().LoadAsync(cancellationToken);
        await services.GetRequiredService<DataProtectionKeyRing>().LoadAsync(cancellationToken);
        await services.GetRequiredService<AdminBootstrap>().EnsureAdminAsync(cancellationToken);
        await services.GetRequiredService<TemplateCatalog>().SeedBuiltInAsync(cancellationToken);
    }

    private async Task WaitForDatabaseAsync(CancellationToken ct)
    {
        // One budget for the whole wait, not a number of attempts: an attempt against a server that accepts the connection
        // and never answers lasts Npgsql's connect timeout (5 s from a postgres:// URL), and 30 of them took 3 minutes.
        var started = time.GetTimestamp();
        using var deadline = new CancellationTokenSource(DatabaseWait, time);
        using var attemptCt = CancellationTokenSource.CreateLinkedTokenSource(ct, deadline.Token);
        Exception? lastOutage = null;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var conn = await db.OpenAsync(attemptCt.Token);
                return;
            }
            catch (Exception ex) when (!ct.IsCancellationRequested && (deadline.IsCancellationRequested || ErrorHandling.IsDatabaseOutage(ex)))
            {
                if (deadline.IsCancellationRequested) throw GaveUp(attempt, lastOutage, cutOff: true, ex);
                lastOutage = ex;
                logger.LogWarning("Database not reachable yet (attempt {Attempt}, {Elapsed:0} s of {Wait:0} s): {Error}",
                    attempt, time.GetElapsedTime(started).TotalSeconds, DatabaseWait.TotalSeconds, ex.Message);
            }
            catch (Exception ex) when (ex is not OperationCanceledException && !ct.IsCancellationRequested)
            {
                // A refusal waiting does not cure (a wrong password, a database that does not exist).
                throw new DatabaseUnavailableException($"cannot open the database {db.Target.Describe()}: {ex.Message}", ex);
            }
            try
            {
                await Task.Delay(DatabaseRetryDelay, time, attemptCt.Token);
            }
            catch (OperationCanceledException ex) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                throw GaveUp(attempt, lastOutage, cutOff: false, ex);
            }
        }

        DatabaseUnavailableException GaveUp(int attempts, Exception? last, bool cutOff, Exception inner)
        {
            var what = last is null ? "no answer" : last.Message;
            var tries = attempts == 1 ? "1 attempt" : $"{attempts} attempts";
            var how = cutOff ? "; the last was still waiting for an answer" : "";
            return new DatabaseUnavailableException(
                $"cannot open the database {db.Target.Describe()}: {what} (gave up after {time.GetElapsedTime(started).TotalSeconds:0} s: " +
                $"{tries}, a second apart{how})", inner);
        }
    }

    private async Task MigrateAsync(CancellationToken ct)
    {
        try
        {
            // A restart against an up-to-date schema (the common case) skips the migration runner, whose set-up is most of a
            // start-up's CPU: agents reconnecting after a restart back off longer the longer the control plane is away.
            await SchemaMigrator.MigrateToLatestAsync(db, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // FluentMigrator's message holds the failed statement and the database's answer ("The error was 42P07: ..."),
            // over several lines: the start-up failure is said in one.
            var what = string.Join(" ", ex.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            throw new DatabaseUnavailableException($"cannot bring the schema of the database {db.Target.Describe()} up to date: {what}", ex);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>The database the control plane is configured with cannot be used; the message says which and why.</summary>
public sealed class DatabaseUnavailableException(string message, Exception inner) : Exception(message, inner);
