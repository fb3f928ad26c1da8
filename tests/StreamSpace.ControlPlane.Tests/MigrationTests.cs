using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Data.Migrations;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The schema migrations on both databases: fresh install, upgrade from the first version, re-run.</summary>
public abstract class MigrationTests(DatabaseKind kind)
{
    private static readonly string[] Tables = ["users", "templates", "sessions", "agents", "agent_commands", "audit_log", "settings"];

    /// <summary>Every migration in the assembly, by version: the list a fully migrated database must show.</summary>
    protected static IReadOnlyList<long> AllVersions() =>
        typeof(M0001_InitialSchema).Assembly.GetTypes()
            .Select(t => t.GetCustomAttributes(typeof(FluentMigrator.MigrationAttribute), false).Cast<FluentMigrator.MigrationAttribute>().FirstOrDefault())
            .Where(a => a is not null)
            .Select(a => a!.Version)
            .Order()
            .ToList();

    [Fact]
    public async Task Fresh_database_gets_every_migration_and_all_tables()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);

        SchemaMigrator.AppliedVersions(database.Target).ShouldBe(AllVersions());
        AllVersions().ShouldContain(2026112901L);
        await using var db = new Db(database.Target);
        await using var conn = await db.OpenAsync(TestContext.Current.CancellationToken);
        foreach (var table in Tables)
            (await conn.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table}")).ShouldBeGreaterThanOrEqualTo(0, table);
        await conn.QueryAsync("SELECT agent_id, status, last_heartbeat FROM agents");
        (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM \"VersionInfo\"")).ShouldBe(AllVersions().Count);
    }

    [Fact]
    public async Task Upgrade_from_the_first_version_keeps_existing_rows()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        var first = AllVersions()[0];
        SchemaMigrator.MigrateUp(database.Target, first);
        SchemaMigrator.AppliedVersions(database.Target).ShouldBe([first]);

        await using var db = new Db(database.Target);
        var created = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
        {
            await conn.ExecuteAsync(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES ('u1', 'olduser', 'hash', 'user', @disabled, 4, 1, @created, @created)
                """, new { disabled = false, created });
        }

        SchemaMigrator.MigrateUp(database.Target);

        SchemaMigrator.AppliedVersions(database.Target).ShouldBe(AllVersions());
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
        {
            var row = await conn.QuerySingleAsync<OldUser>(
                "SELECT username AS Username, max_sessions AS MaxSessions, created_at AS CreatedAt FROM users WHERE id = 'u1'");
            row.Username.ShouldBe("olduser");
            row.MaxSessions.ShouldBe(4);
            row.CreatedAt.ShouldBe(created);
        }
    }

    [Fact]
    public async Task A_drain_set_before_the_agents_own_drain_was_kept_apart_stays_as_an_admins()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target, 2026113009);
        await using var db = new Db(database.Target);
        var now = DateTimeOffset.UtcNow;
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
            await conn.ExecuteAsync(
                """
                INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                VALUES ('drained', 'h1', 'offline', 'process', 'default', 10, 0, @yes, @now, @now),
                       ('open', 'h2', 'offline', 'process', 'default', 10, 0, @no, @now, @now)
                """, new { yes = true, no = false, now });

        SchemaMigrator.MigrateUp(database.Target);

        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
        {
            var rows = (await conn.QueryAsync<(string AgentId, bool Draining, bool AgentDraining)>(
                "SELECT agent_id, draining, agent_draining FROM agents ORDER BY agent_id")).ToList();
            rows.ShouldBe([("drained", true, false), ("open", false, false)]);
        }
    }

    [Fact]
    public async Task Migrating_twice_is_a_no_op()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);
        await using var db = new Db(database.Target);
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
            await conn.ExecuteAsync("INSERT INTO settings (key, value, updated_at) VALUES ('probe', 'kept', @now)", new { now = DateTimeOffset.UtcNow });

        SchemaMigrator.MigrateUp(database.Target);

        SchemaMigrator.AppliedVersions(database.Target).ShouldBe(AllVersions());
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
        {
            (await conn.ExecuteScalarAsync<string>("SELECT value FROM settings WHERE key = 'probe'")).ShouldBe("kept");
            (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM \"VersionInfo\"")).ShouldBe(AllVersions().Count);
        }
    }
}

file sealed class OldUser
{
    public string Username { get; init; } = "";
    public int MaxSessions { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
}

public sealed class MigrationTests_Sqlite() : MigrationTests(DatabaseKind.Sqlite);

/// <summary>Several replicas on one database (PostgreSQL only: SQLite serves one replica).</summary>
public sealed class MigrationTests_Postgres() : MigrationTests(DatabaseKind.Postgres)
{
    [Fact]
    public async Task Replicas_starting_at_once_on_a_fresh_database_all_migrate_it()
    {
        await using var database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        await using var db = new Db(database.Target);

        await MigrateAtOnceAsync(db);

        SchemaMigrator.AppliedVersions(database.Target).ShouldBe(AllVersions());
    }

    [Fact]
    public async Task Replicas_starting_at_once_after_an_upgrade_all_apply_the_new_migration()
    {
        // From the first version: with only the newest missing, the replicas that lost the race still failed ("42701: column
        // reported_capacity already exists"), but not every run; eleven migrations to apply make them overlap every time.
        await using var database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        SchemaMigrator.MigrateUp(database.Target, AllVersions()[0]);
        await using var db = new Db(database.Target);

        await MigrateAtOnceAsync(db);

        SchemaMigrator.AppliedVersions(database.Target).ShouldBe(AllVersions());
    }

    /// <summary>Three control planes' start-up migration step, started together (three replicas of one deployment).</summary>
    private static async Task MigrateAtOnceAsync(Db db)
    {
        using var start = new SemaphoreSlim(0);
        var replicas = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            await start.WaitAsync(TestContext.Current.CancellationToken);
            await SchemaMigrator.MigrateToLatestAsync(db, TestContext.Current.CancellationToken);
        })).ToList();
        start.Release(replicas.Count);
        await Task.WhenAll(replicas);
    }
}
