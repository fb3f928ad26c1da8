using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>Where a user stands against <c>users.max_sessions</c>.</summary>
public sealed record QuotaStatus(long LiveSessions, int MaxSessions)
{
    public bool Exceeded => LiveSessions >= MaxSessions;
}

/// <summary>
/// The per-user limit of live sessions. Checked in the same write transaction that inserts the session,
/// with the user row locked on PostgreSQL (SQLite serializes write transactions), so parallel creates by
/// one user can never pass the limit together.
/// </summary>
public sealed class SessionQuota(Db db)
{
    /// <summary>Locks the user row and counts their live sessions; null when the user does not exist.</summary>
    public async Task<QuotaStatus?> CheckAsync(DbConnection conn, DbTransaction tx, string userId, CancellationToken ct)
    {
        var max = await conn.QuerySingleOrDefaultAsync<int?>(new CommandDefinition(
            $"SELECT max_sessions FROM users WHERE id = @userId{db.ForUpdate}", new { userId }, tx, cancellationToken: ct));
        if (max is null) return null;
        var live = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"SELECT COUNT(*) FROM sessions WHERE user_id = @userId AND state IN ({SessionState.LiveSqlList})",
            new { userId }, tx, cancellationToken: ct));
        return new QuotaStatus(live, max.Value);
    }
}
