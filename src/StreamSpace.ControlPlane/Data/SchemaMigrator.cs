using FluentMigrator.Runner;

namespace StreamSpace.ControlPlane.Data;

/// <summary>Applies pending migrations (history in the <c>VersionInfo</c> table) on both databases.</summary>
public static class SchemaMigrator
{
    public static void MigrateUp(DatabaseTarget target, long? toVersion = null)
    {
        using var services = BuildRunnerServices(target);
        var runner = services.GetRequiredService<IMigrationRunner>();
        if (toVersion is { } v) runner.MigrateUp(v);
        else runner.MigrateUp();
    }

    public static IReadOnlyList<long> AppliedVersions(DatabaseTarget target)
    {
        using var services = BuildRunnerServices(target);
        var loader = services.GetRequiredService<FluentMigrator.Runner.IVersionLoader>();
        loader.LoadVersionInfo();
        return loader.VersionInfo.AppliedMigrations().OrderBy(v => v).ToList();
    }

    private static ServiceProvider BuildRunnerServices(DatabaseTarget target) =>
        new ServiceCollection()
            .AddFluentMigratorCore()
            .ConfigureRunner(rb =>
            {
                if (target.Kind == DatabaseKind.Sqlite) rb.AddSQLite();
                else rb.AddPostgres();
                rb.WithGlobalConnectionString(target.ConnectionString)
                  .ScanIn(typeof(SchemaMigrator).Assembly).For.Migrations();
            })
            .AddLogging()
            .BuildServiceProvider(validateScopes: false);
}
