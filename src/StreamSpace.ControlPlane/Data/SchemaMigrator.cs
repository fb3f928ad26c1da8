using System.Reflection;
using Dapper;
using FluentMigrator;
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

    /// <summary>
    /// Key of the PostgreSQL advisory lock that serializes migrations between replicas ("SSMIGRAT" in ASCII). FluentMigrator
    /// takes no lock: replicas starting together on one database each ran the same migrations, and all but one died
    /// ("42P07: relation "VersionInfo" already exists", "42701: column ... already exists").
    /// </summary>
    internal const long MigrationLockKey = 0x53534D4947524154;

    /// <summary>
    /// Brings the schema up to date, as a control plane does at start-up. An up-to-date schema (the common restart) costs one
    /// query. Otherwise, on PostgreSQL, one replica at a time migrates, holding an advisory lock on a connection of its own;
    /// the replicas that waited for it find the schema up to date and do nothing. SQLite serves one replica.
    /// </summary>
    public static async Task MigrateToLatestAsync(Db db, CancellationToken ct)
    {
        if (await IsUpToDateAsync(db, ct)) return;
        if (!db.IsPostgres)
        {
            MigrateUp(db.Target);
            return;
        }
        // Unpooled: a session-level lock ends with its session, whatever happens to this code.
        await using var holder = await db.OpenUnpooledAsync(ct);
        await holder.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_lock(@key)", new { key = MigrationLockKey }, cancellationToken: ct));
        try
        {
            if (!await IsUpToDateAsync(db, ct))
                MigrateUp(db.Target);
        }
        finally
        {
            // Not cancellable, so the next replica need not wait for this connection's close (which releases it anyway).
            await holder.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_unlock(@key)", new { key = MigrationLockKey },
                cancellationToken: CancellationToken.None));
        }
    }

    /// <summary>Every migration in this assembly, by version.</summary>
    public static IReadOnlyList<long> KnownVersions { get; } = typeof(SchemaMigrator).Assembly.GetTypes()
        .Select(t => t.GetCustomAttribute<MigrationAttribute>()?.Version).OfType<long>().Order().ToList();

    /// <summary>
    /// True when the <c>VersionInfo</c> history already lists every migration this build knows (a cheap query, no
    /// migration runner); false when anything is missing, including a fresh database without that table.
    /// </summary>
    public static async Task<bool> IsUpToDateAsync(Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var exists = await conn.ExecuteScalarAsync<long>(new CommandDefinition(db.IsPostgres
            ? "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'VersionInfo' AND table_schema = current_schema()"
            : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'VersionInfo'", cancellationToken: ct));
        if (exists == 0) return false;
        var applied = (await conn.QueryAsync<long>(new CommandDefinition("SELECT \"Version\" FROM \"VersionInfo\"", cancellationToken: ct))).ToHashSet();
        return KnownVersions.All(applied.Contains);
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
