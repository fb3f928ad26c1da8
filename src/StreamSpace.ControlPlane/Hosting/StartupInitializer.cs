using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Templates;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Everything that must happen before the first request: wait for the database, apply migrations,
/// load the signing key, create the admin, seed the catalog. Runs in <c>StartingAsync</c>, before
/// Kestrel listens and before other hosted services start.
/// </summary>
public sealed class StartupInitializer(IServiceProvider services, Db db, ILogger<StartupInitializer> logger) : IHostedLifecycleService
{
    private const int DatabaseAttempts = 30;

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
        await services.GetRequiredService<AdminBootstrap>().EnsureAdminAsync(cancellationToken);
        await services.GetRequiredService<TemplateCatalog>().SeedBuiltInAsync(cancellationToken);
    }

    private async Task WaitForDatabaseAsync(CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var conn = await db.OpenAsync(ct);
                return;
            }
            catch (Exception ex) when (attempt < DatabaseAttempts && ErrorHandling.IsDatabaseOutage(ex))
            {
                logger.LogWarning("Database not reachable yet (attempt {Attempt}/{Max}): {Error}", attempt, DatabaseAttempts, ex.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Unreachable for good, or a refusal waiting does not cure (a wrong password, a database that does not exist).
                throw new DatabaseUnavailableException(
                    $"cannot open the database {db.Target.Describe()}: {ex.Message}" +
                    (ErrorHandling.IsDatabaseOutage(ex) ? $" (tried {DatabaseAttempts} times, a second apart)" : ""), ex);
            }
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
