using System.Data.Common;
using Dapper;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Opens connections to the one database, SQLite or PostgreSQL, and hides the few dialect differences.
/// Plain SQL (Dapper) is written to run on both.
/// </summary>
public sealed class Db : IAsyncDisposable
{
    private readonly NpgsqlDataSource? _pg;
    private readonly string? _unpooled;

    public Db(DatabaseTarget target)
    {
        Target = target;
        if (target.Kind == DatabaseKind.Postgres)
        {
            var builder = new NpgsqlDataSourceBuilder(target.ConnectionString);
            // Statements run thousands of times a second are parsed once per connection, not per call (unless the
            // operator's connection string says otherwise)...
            var csb = builder.ConnectionStringBuilder;
            if (csb.MaxAutoPrepare == 0) csb.MaxAutoPrepare = 128;
            // ...but planned on every call: a prepared statement's generic plan is made once, when the tables may still be
            // small, and for the set-based UPDATE ... FROM unnest(@ids) statements that was a sequential scan. Measured
            // with pg_stat_statements under the creation benchmark: 3.8 ms per report batch with generic plans, 0.5 ms custom.
            // Statements that scan no table opt out per transaction with CachedPlansSql.
            if (csb.Options?.Contains("plan_cache_mode", StringComparison.Ordinal) != true)
                csb.Options = $"{csb.Options} -c plan_cache_mode=force_custom_plan".Trim();
            _pg = builder.Build();
            _unpooled = new NpgsqlConnectionStringBuilder(csb.ConnectionString) { Pooling = false }.ConnectionString;
        }
        DapperSetup.EnsureRegistered();
    }

    /// <summary>
    /// PostgreSQL: put before statements that read no table by a parameter (e.g. INSERT ... SELECT FROM unnest) so they and
    /// what they fire (foreign-key checks, trigger statements) use cached plans for the rest of the transaction instead of
    /// the connection's per-call planning. Under per-call planning PostgreSQL planned a foreign-key check again for every
    /// inserted row (pgbench, 16-row sessions INSERT: 0.80-0.87 ms, with cached plans 0.44-0.57 ms). Not for reads that
    /// pick rows by a parameter: their generic plan made while a table was tiny is a sequential scan that stays after it grew.
    /// </summary>
    public const string CachedPlansSql = "SET LOCAL plan_cache_mode = auto;";

    public DatabaseTarget Target { get; }
    public DatabaseKind Kind => Target.Kind;
    public bool IsPostgres => Kind == DatabaseKind.Postgres;

    /// <summary>
    /// Row lock suffix for a SELECT inside a write transaction. SQLite serializes writers (BEGIN IMMEDIATE) instead.
    /// On PostgreSQL it is FOR NO KEY UPDATE: it serializes the read-then-write checks exactly like FOR UPDATE but
    /// does not block foreign-key checks (FOR KEY SHARE), which PostgreSQL takes on the parent row when a child row
    /// is inserted or updated twice in one transaction; with FOR UPDATE a session create (locking its user) and a
    /// batch of agent reports (updating that user's sessions) deadlocked.
    /// </summary>
    public string ForUpdate => IsPostgres ? " FOR NO KEY UPDATE" : "";

    /// <summary>
    /// A membership test against a list parameter: <c>column = ANY(@parameter)</c> on PostgreSQL (Npgsql sends the array
    /// as one parameter), <c>column IN @parameter</c> on SQLite (Dapper expands the list).
    /// </summary>
    public string InList(string column, string parameter) => IsPostgres ? $"{column} = ANY(@{parameter})" : $"{column} IN @{parameter}";

    /// <summary>
    /// Drops every idle pooled connection. Called when the database turned out unreachable: the pooled
    /// sockets are dead then, and without this the first requests after the database is back would each
    /// pick up a dead one and fail once more. Connections in use are discarded when returned.
    /// </summary>
    public void ClearPool() => _pg?.Clear();

    /// <summary>
    /// PostgreSQL: a connection of its own, closed for good when disposed, for session state that must end with its user
    /// (LISTEN, a session-level advisory lock) rather than wait for the pool's reset on the connection's next use.
    /// </summary>
    public async Task<NpgsqlConnection> OpenUnpooledAsync(CancellationToken ct)
    {
        var conn = new NpgsqlConnection(_unpooled ?? throw new InvalidOperationException("Only PostgreSQL has unpooled connections."));
        try
        {
            await conn.OpenAsync(ct);
            return conn;
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }
    }

    private const string SqlitePragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=30000;";

    public async Task<DbConnection> OpenAsync(CancellationToken ct)
    {
        if (_pg is not null)
            return await _pg.OpenConnectionAsync(ct);
        var conn = new SqliteConnection(Target.ConnectionString);
        await conn.OpenAsync(ct);
        await conn.ExecuteAsync(SqlitePragmas);
        return conn;
    }

    /// <summary>
    /// A connection opened and set up without awaiting, for the rare caller behind a synchronous interface (the Data
    /// Protection key ring, <see cref="Identity.DataProtectionKeyStore"/>): blocking on <see cref="OpenAsync"/> there would
    /// hold a thread-pool thread waiting for another one.
    /// </summary>
    public DbConnection Open()
    {
        if (_pg is not null)
            return _pg.OpenConnection();
        var conn = new SqliteConnection(Target.ConnectionString);
        try
        {
            conn.Open();
            conn.Execute(SqlitePragmas);
            return conn;
        }
        catch
        {
            conn.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A write transaction. On SQLite it is BEGIN IMMEDIATE, so the read-then-write checks inside it
    /// (quota, capacity) are serialized; on PostgreSQL use <see cref="ForUpdate"/> on the rows they read.
    /// </summary>
    public async Task<(DbConnection Connection, DbTransaction Transaction)> BeginWriteAsync(CancellationToken ct)
    {
        var conn = await OpenAsync(ct);
        try
        {
            var tx = conn is SqliteConnection sqlite
                ? sqlite.BeginTransaction(deferred: false)
                : await conn.BeginTransactionAsync(ct);
            return (conn, tx);
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }
    }

    /// <summary>How often a transaction PostgreSQL aborted as a deadlock victim is run again.</summary>
    private const int ConflictRetries = 5;

    /// <summary>
    /// Runs <paramref name="work"/> in a write transaction and commits it. A transaction that PostgreSQL
    /// aborts to break a deadlock or a serialization conflict is run again from the start (the work must
    /// only touch the database), so concurrent writers never see those as errors.
    /// </summary>
    public async Task<T> InTransactionAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var (conn, tx) = await BeginWriteAsync(ct);
                await using (conn)
                await using (tx)
                {
                    var result = await work(conn, tx);
                    await tx.CommitAsync(ct);
                    return result;
                }
            }
            catch (PostgresException ex) when (IsRetryableConflict(ex) && attempt < ConflictRetries)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(5, 20 * attempt)), ct);
            }
        }
    }

    /// <summary>Deadlock victim (40P01) or serialization failure (40001): safe to run the transaction again.</summary>
    public static bool IsRetryableConflict(Exception ex) => ex is PostgresException { SqlState: "40P01" or "40001" };

    public async ValueTask DisposeAsync()
    {
        if (_pg is not null) await _pg.DisposeAsync();
    }
}
