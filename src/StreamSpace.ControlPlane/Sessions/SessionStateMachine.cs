using System.Data.Common;
using Dapper;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>
/// The one table of allowed session transitions (design §5) and the one place that applies it.
/// Every state change is a compare-and-set on the stored state, so two writers can never both move a
/// session, and it runs in the caller's transaction so a command's final state and the session's
/// change commit together (invariant 3).
/// </summary>
public static class SessionStateMachine
{
    private static readonly Dictionary<string, string[]> Allowed = new(StringComparer.Ordinal)
    {
        [SessionState.Pending] = [SessionState.Starting, SessionState.Running, SessionState.Terminating, SessionState.Failed],
        [SessionState.Starting] = [SessionState.Running, SessionState.Terminating, SessionState.Failed],
        [SessionState.Running] = [SessionState.Hibernating, SessionState.Terminating, SessionState.Failed],
        [SessionState.Hibernating] = [SessionState.Hibernated, SessionState.Running, SessionState.Terminating, SessionState.Failed],
        [SessionState.Hibernated] = [SessionState.Waking, SessionState.Terminating, SessionState.Failed],
        [SessionState.Waking] = [SessionState.Running, SessionState.Hibernated, SessionState.Terminating, SessionState.Failed],
        [SessionState.Terminating] = [SessionState.Terminated],
        [SessionState.Terminated] = [],
        [SessionState.Failed] = [],
    };

    /// <summary>
    /// The reason a transition stores. Entering <c>terminated</c> without a reason of its own (a stop that succeeded, the
    /// agent confirming it) keeps the one the termination was asked with ("deleted by …", "idle: …"): the session list
    /// shows it as why the session ended. Likewise <c>hibernating → hibernated</c> keeps why it was hibernated
    /// ("hibernated by …", "idle: …"); a wake that did not take (<c>waking → hibernated</c>) does not keep "woken by …".
    /// A reason given (an expired stop, a failed wake) still replaces it.
    /// </summary>
    private static string ReasonSql(string to, string reason, string stored, string storedState) => to switch
    {
        SessionState.Terminated => $"COALESCE({reason}, {stored})",
        SessionState.Hibernated => $"COALESCE({reason}, CASE WHEN {storedState} = '{SessionState.Hibernating}' THEN {stored} END)",
        _ => reason,
    };

    public static bool CanTransition(string from, string to) =>
        Allowed.TryGetValue(from, out var targets) && Array.IndexOf(targets, to) >= 0;

    /// <summary>All states from which <paramref name="to"/> may be entered.</summary>
    public static IReadOnlyList<string> SourcesOf(string to) =>
        Allowed.Where(kv => Array.IndexOf(kv.Value, to) >= 0).Select(kv => kv.Key).ToList();

    /// <summary>
    /// Moves the session to <paramref name="to"/> if its current state allows it (and, when given, it is
    /// still <paramref name="expectedFrom"/> and placed on agent <paramref name="placedOn"/>). Returns the state it
    /// left, or null when nothing changed.
    /// </summary>
    public static async Task<string?> TryTransitionAsync(
        DbConnection conn, DbTransaction? tx, string sessionId, string to, string? reason, DateTimeOffset now,
        string? expectedFrom = null, string? placedOn = null, CancellationToken ct = default)
    {
        var sources = expectedFrom is null ? SourcesOf(to) : CanTransition(expectedFrom, to) ? [expectedFrom] : [];
        if (sources.Count == 0) return null;
        var current = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
            "SELECT state FROM sessions WHERE id = @sessionId" + (placedOn is null ? "" : " AND agent_id = @placedOn"),
            new { sessionId, placedOn }, tx, cancellationToken: ct));
        if (current is null || !sources.Contains(current)) return null;
        var changed = await conn.ExecuteAsync(new CommandDefinition(
            $"""
            UPDATE sessions SET state = @to, state_reason = {ReasonSql(to, "@reason", "state_reason", "state")}, updated_at = @now
            WHERE id = @sessionId AND state = @current
            """,
            new { sessionId, to, reason, now, current }, tx, cancellationToken: ct));
        return changed == 1 ? current : null;
    }

    /// <summary>
    /// The set form of <see cref="TryTransitionAsync"/> for a batch of agents' reports: moves every listed session that
    /// is placed on the listed agent (the one that reported about it) and currently in one of <paramref name="from"/>
    /// (and may go to <paramref name="to"/>) in ONE statement on PostgreSQL; each session gets its own reason. Returns
    /// the ids that changed. Ids must be distinct.
    /// </summary>
    public static async Task<IReadOnlyList<string>> TryTransitionManyAsync(
        DbConnection conn, DbTransaction tx, bool postgres, IReadOnlyList<(string Id, string AgentId, string? Reason)> sessions, IReadOnlyList<string> from,
        string to, DateTimeOffset now, CancellationToken ct)
    {
        var sources = from.Where(f => CanTransition(f, to)).ToArray();
        if (sources.Length == 0 || sessions.Count == 0) return [];
        if (postgres)
        {
            return (await conn.QueryAsync<string>(new CommandDefinition(
                $"""
                UPDATE sessions s SET state = @to, state_reason = {ReasonSql(to, "v.reason", "s.state_reason", "s.state")}, updated_at = @now
                FROM unnest(@ids, @agents, @reasons) AS v(id, agent_id, reason)
                WHERE s.id = v.id AND s.agent_id = v.agent_id AND s.state = ANY(@sources)
                RETURNING s.id
                """,
                new
                {
                    to, now, sources, ids = sessions.Select(x => x.Id).ToArray(), agents = sessions.Select(x => x.AgentId).ToArray(),
                    reasons = sessions.Select(x => x.Reason).ToArray(),
                },
                tx, cancellationToken: ct))).ToList();
        }
        var changed = new List<string>();
        foreach (var (id, agentId, reason) in sessions)
        {
            if (await conn.ExecuteAsync(new CommandDefinition(
                    $"UPDATE sessions SET state = @to, state_reason = {ReasonSql(to, "@reason", "state_reason", "state")}, updated_at = @now WHERE id = @id AND agent_id = @agentId AND state IN @sources",
                    new { to, reason, now, id, agentId, sources }, tx, cancellationToken: ct)) == 1)
                changed.Add(id);
        }
        return changed;
    }
}
