using System.Text.Json;
using Dapper;
using Microsoft.Data.Sqlite;
using SQLitePCL;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>
/// What one query reads, as the database itself counts it, for tests that pin a query's cost while history grows: on
/// PostgreSQL the shared buffers its plan touched (<c>EXPLAIN (ANALYZE, BUFFERS)</c>, hit or read, subplans included),
/// on SQLite the virtual-machine steps it ran (<c>sqlite3_stmt_status</c>, a few per row visited). Both grow with the
/// rows a query walks: a query that reads one agent's thousands of ended sessions costs a page per few dozen of them
/// (PostgreSQL) or several steps per row (SQLite), one that reads a counter row a handful. The query runs for real (a SELECT's row locks are released when its statement commits).
/// </summary>
internal static class QueryCost
{
    /// <summary>
    /// The most a query that reads a handful of rows costs. Measured: such reads cost PostgreSQL 1-5 buffers and SQLite
    /// 13-104 steps; a read of one agent's 5 000 ended sessions cost PostgreSQL 150-160 buffers and SQLite 45 000 steps, a
    /// walk through a 5 000-entry audit log 57 buffers and 25 000 steps (its test seeds 20 000 entries).
    /// </summary>
    public static long HandfulOfRows(DatabaseKind kind) => kind == DatabaseKind.Postgres ? 20 : 500;

    /// <param name="args">parameters by name (without the @): strings, whole numbers and booleans</param>
    public static async Task<long> MeasureAsync(ControlPlaneFixture cp, string sql, IReadOnlyDictionary<string, object> args)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        if (conn is SqliteConnection sqlite) return SqliteSteps(sqlite, sql, args);
        var plan = await conn.ExecuteScalarAsync<string>($"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", new DynamicParameters(args));
        using var doc = JsonDocument.Parse(plan!);
        var top = doc.RootElement[0].GetProperty("Plan");
        return top.GetProperty("Shared Hit Blocks").GetInt64() + top.GetProperty("Shared Read Blocks").GetInt64();
    }

    private static long SqliteSteps(SqliteConnection conn, string sql, IReadOnlyDictionary<string, object> args)
    {
        Check(conn, raw.sqlite3_prepare_v2(conn.Handle, sql, out var stmt));
        using (stmt)
        {
            foreach (var (name, value) in args)
            {
                var index = raw.sqlite3_bind_parameter_index(stmt, "@" + name);
                if (index == 0) continue;
                Check(conn, value switch
                {
                    string text => raw.sqlite3_bind_text(stmt, index, text),
                    bool flag => raw.sqlite3_bind_int64(stmt, index, flag ? 1 : 0),
                    _ => raw.sqlite3_bind_int64(stmt, index, Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)),
                });
            }
            int rc;
            while ((rc = raw.sqlite3_step(stmt)) == raw.SQLITE_ROW) { }
            if (rc != raw.SQLITE_DONE) Check(conn, rc);
            return raw.sqlite3_stmt_status(stmt, raw.SQLITE_STMTSTATUS_VM_STEP, 0);
        }
    }

    private static void Check(SqliteConnection conn, int rc)
    {
        if (rc != raw.SQLITE_OK) throw new InvalidOperationException($"SQLite error {rc}: {raw.sqlite3_errmsg(conn.Handle).utf8_to_string()}");
    }
}
