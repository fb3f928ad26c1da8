using Npgsql;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>
/// A fresh, empty database for one fixture: a temporary SQLite file, or a new database on the private
/// PostgreSQL server that ./test.sh starts (<c>STREAMSPACE_TEST_POSTGRES</c>).
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    public const string PostgresVariable = "STREAMSPACE_TEST_POSTGRES";

    private readonly string? _pgAdmin;
    private readonly string? _pgName;
    private readonly string? _sqliteFolder;

    private TestDatabase(DatabaseKind kind, string setting, string? pgAdmin, string? pgName, string? sqliteFolder)
    {
        Kind = kind;
        Setting = setting;
        _pgAdmin = pgAdmin;
        _pgName = pgName;
        _sqliteFolder = sqliteFolder;
        Target = DatabaseTarget.Parse(setting, Path.GetTempPath());
    }

    public DatabaseKind Kind { get; }
    /// <summary>The value for <c>STREAMSPACE_DATABASE</c>.</summary>
    public string Setting { get; }
    public DatabaseTarget Target { get; }

    public static async Task<TestDatabase> CreateAsync(DatabaseKind kind)
    {
        if (kind == DatabaseKind.Sqlite)
        {
            var folder = Path.Combine(Path.GetTempPath(), "streamspace-tests", Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            return new TestDatabase(kind, "sqlite:" + Path.Combine(folder, "test.db"), null, null, folder);
        }
        var server = Environment.GetEnvironmentVariable(PostgresVariable);
        if (string.IsNullOrEmpty(server))
            throw new InvalidOperationException(
                $"PostgreSQL tests need {PostgresVariable}=postgres://user@host:port/postgres; ./test.sh starts a private server and sets it " +
                "(or run scripts/postgres.sh start and export it).");
        var admin = DatabaseTarget.Parse(server, Path.GetTempPath()).ConnectionString;
        var name = "ss_test_" + Guid.NewGuid().ToString("N")[..16];
        await using (var conn = new NpgsqlConnection(admin))
        {
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        var uri = new Uri(server);
        var setting = $"{uri.Scheme}://{uri.UserInfo}@{uri.Host}:{uri.Port}/{name}";
        return new TestDatabase(kind, setting, admin, name, null);
    }

    public async ValueTask DisposeAsync()
    {
        if (_pgAdmin is not null)
        {
            NpgsqlConnection.ClearAllPools();
            try
            {
                await using var conn = new NpgsqlConnection(_pgAdmin);
                await conn.OpenAsync();
                await using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_pgName} WITH (FORCE)", conn);
                await cmd.ExecuteNonQueryAsync();
            }
            catch (NpgsqlException)
            {
                // Best effort: the server may already be stopping at the end of the run.
            }
        }
        if (_sqliteFolder is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(_sqliteFolder, recursive: true); } catch (IOException) { }
        }
    }
}
