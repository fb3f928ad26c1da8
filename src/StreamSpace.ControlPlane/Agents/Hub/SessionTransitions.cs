using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Sessions;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>Hub-side helpers over <see cref="SessionStateMachine"/>: a transition allowed only from the states a given report explains.</summary>
internal static class SessionTransitions
{
    /// <summary>
    /// Moves the session to <paramref name="to"/> when it is currently in one of <paramref name="from"/>
    /// (through the state machine's compare-and-set). Returns the state it left, or null.
    /// </summary>
    public static async Task<string?> FromAsync(
        DbConnection conn, DbTransaction tx, string sessionId, string[] from, string to, string? reason, DateTimeOffset now, CancellationToken ct)
    {
        var current = await CurrentAsync(conn, tx, sessionId, ct);
        if (current is null || Array.IndexOf(from, current) < 0) return null;
        return await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, to, reason, now, expectedFrom: current, ct: ct);
    }

    public static Task<string?> CurrentAsync(DbConnection conn, DbTransaction tx, string sessionId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
            "SELECT state FROM sessions WHERE id = @sessionId", new { sessionId }, tx, cancellationToken: ct));

    /// <summary>
    /// Ends a live session: through terminating to terminated (an app that exited, a stop that finished). A session
    /// already terminating keeps the reason its termination was asked with; <paramref name="reason"/> is for one that was not.
    /// </summary>
    public static async Task<bool> EndAsync(DbConnection conn, DbTransaction tx, string sessionId, string reason, DateTimeOffset now, CancellationToken ct)
    {
        var current = await CurrentAsync(conn, tx, sessionId, ct);
        if (current is null || SessionState.IsFinal(current)) return false;
        if (current != SessionState.Terminating
            && await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, SessionState.Terminating, reason, now, expectedFrom: current, ct: ct) is null)
            return false;
        return await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, SessionState.Terminated, null, now, expectedFrom: SessionState.Terminating, ct: ct) is not null;
    }
}
