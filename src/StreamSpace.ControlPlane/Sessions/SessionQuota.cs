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
    /// <summary>
    /// The quota read of a batch of creates, for one round trip together with the batch's other reads
    /// (<see cref="SessionCreator"/>): locks the rows of the users named in the parameter <c>@q_names</c> (in id order) and
    /// counts their live sessions. The counts are read after the locks are held and, under READ COMMITTED, with their own
    /// snapshot, so they include every session committed by whoever held these rows before us. The counts are kept by
    /// triggers on sessions (migration M0004). Read the result with <see cref="ReadAsync"/>.
    /// </summary>
    public string LockSql => $"""
        SELECT {UserRecord.Columns} FROM users WHERE {db.InList("username", "q_names")} ORDER BY id{db.ForUpdate};
        SELECT l.user_id, l.live FROM user_live_sessions l JOIN users u ON u.id = l.user_id WHERE {db.InList("u.username", "q_names")}
        """;

    /// <summary>Reads the two result sets of <see cref="LockSql"/>.</summary>
    public static async Task<QuotaRound> ReadAsync(SqlMapper.GridReader results)
    {
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
