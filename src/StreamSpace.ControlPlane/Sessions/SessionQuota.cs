using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>Where a user stands against <c>users.max_sessions</c>.</summary>
public sealed record QuotaStatus(long LiveSessions, int MaxSessions)
{
    public bool Exceeded => LiveSessions >= MaxSessions;
}

/// <summary>
/// The per-user limit of live sessions. Checked in the same write transaction that inserts the sessions,
/// with the users' rows locked on PostgreSQL (in id order; SQLite serializes write transactions), so
/// parallel creates by one user can never pass the limit together.
/// </summary>
public sealed class SessionQuota(Db db)
{
    /// <summary>Locks the named users' rows and counts their live sessions, for a batch of creates.</summary>
    public async Task<QuotaRound> BeginAsync(DbConnection conn, DbTransaction tx, IReadOnlyCollection<string> usernames, CancellationToken ct)
    {
        var names = usernames.Distinct(StringComparer.Ordinal).ToArray();
        // One round trip, two statements: the live counts are read after the locks are held and, under READ COMMITTED,
        // with their own snapshot, so they include every session committed by whoever held these rows before us. The
        // counts are kept by triggers on sessions (migration M0004).
        using var results = await conn.QueryMultipleAsync(new CommandDefinition(
            $"""
            SELECT {UserRecord.Columns} FROM users WHERE {db.InList("username", "names")} ORDER BY id{db.ForUpdate};
            SELECT l.user_id, l.live FROM user_live_sessions l JOIN users u ON u.id = l.user_id WHERE {db.InList("u.username", "names")}
            """,
            new { names }, tx, cancellationToken: ct));
        var owners = (await results.ReadAsync<UserRecord>()).ToDictionary(u => u.Username, StringComparer.Ordinal);
        var live = (await results.ReadAsync<(string UserId, long Live)>()).ToDictionary(r => r.UserId, r => r.Live, StringComparer.Ordinal);
        return new QuotaRound(owners, live);
    }
}

/// <summary>The locked users of one batch and their live-session counts; <see cref="Reserve"/> counts a session just placed.</summary>
public sealed class QuotaRound(Dictionary<string, UserRecord> owners, Dictionary<string, long> live)
{
    public UserRecord? Owner(string username) => owners.GetValueOrDefault(username);

    public QuotaStatus Check(UserRecord owner) => new(live.GetValueOrDefault(owner.Id), owner.MaxSessions);

    public void Reserve(UserRecord owner) => live[owner.Id] = live.GetValueOrDefault(owner.Id) + 1;
}
