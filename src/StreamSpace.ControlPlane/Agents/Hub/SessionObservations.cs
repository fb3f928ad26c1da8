using Dapper;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Applies <c>session.status</c> events (what the agent observed) to the sessions table through the state
/// machine, and keeps the connection's tracked inventory current. Events about sessions placed on another agent change
/// nothing, not even the tracked inventory (logged as a warning); events about sessions the database does not know are
/// tracked, so reconciliation stops them as orphans — up to <see cref="AgentConnection.TrackedSessionLimit"/>: each one
/// costs memory for the connection's life and a stop command per reconciliation, so an agent that reports session after
/// session nobody placed there (a bug, a loop) is refused rather than followed.
/// </summary>
public sealed class SessionObservations(Db db, TimeProvider time, ILogger<SessionObservations> logger)
{
    /// <summary>Sessions an agent may report per slot of its capacity (<c>agents.max_sessions</c>): room for orphans
    /// left from before a restart or an admin lowering the capacity, far below an agent inventing session ids.</summary>
    public const int TrackedSessionsPerSlot = 4;
    /// <summary>The least an agent may report, whatever its capacity (an agent set to 0 slots may still run old sessions).</summary>
    public const int MinTrackedSessions = 100;

    /// <summary>How many sessions an agent with <paramref name="maxSessions"/> slots may report at once.</summary>
    public static int TrackingLimit(int maxSessions) =>
        (int)Math.Min(int.MaxValue, Math.Max(MinTrackedSessions, (long)TrackedSessionsPerSlot * maxSessions));

    private static readonly string[] AwaitingReady = [SessionState.Pending, SessionState.Starting, SessionState.Waking];
    private static readonly string[] CanCrash =
        [SessionState.Pending, SessionState.Starting, SessionState.Running, SessionState.Hibernating, SessionState.Hibernated, SessionState.Waking];

    /// <summary>
    /// Call with <see cref="AgentConnection.ProcessingLock"/> held. False (and nothing changed) when the event reports one
    /// more unknown session than <see cref="AgentConnection.TrackedSessionLimit"/> allows: the caller closes the connection.
    /// </summary>
    public async Task<bool> ApplyAsync(AgentConnection connection, SessionStatusPayload status, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        string? placedElsewhere = null;
        var overLimit = false;
        var outcome = await db.InTransactionAsync(async (conn, tx) =>
        {
            var owner = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                $"SELECT agent_id FROM sessions WHERE id = @id{db.ForUpdate}", new { id = status.SessionId }, tx, cancellationToken: ct));
            // Another agent's session: this agent's word about it counts for nothing, not even as inventory (a stop of
            // it sent here would otherwise end the session on the agent it is placed on).
            if (owner is not null && owner != connection.AgentId)
            {
                placedElsewhere = owner;
                return null;
            }
            if (owner is null && !connection.Inventory.ContainsKey(status.SessionId) && IsTracked(status.State)
                && connection.Inventory.Count >= connection.TrackedSessionLimit)
            {
                overLimit = true;
                return null;
            }
            if (owner is null) return "ignored: the session is unknown or not placed on any agent";
            var current = await SessionTransitions.CurrentAsync(conn, tx, status.SessionId, ct);
            var from = status.State switch
            {
                ObservedStates.Running => await SessionTransitions.FromAsync(conn, tx, status.SessionId, AwaitingReady, SessionState.Running, null, now, ct),
                ObservedStates.Hibernated => await SessionTransitions.FromAsync(conn, tx, status.SessionId, [SessionState.Hibernating], SessionState.Hibernated, null, now, ct),
                ObservedStates.Exited => await EndAsync(conn, tx, current, status.SessionId, ExitedReason(status.Reason), now, ct),
                ObservedStates.Stopped => await EndAsync(conn, tx, current, status.SessionId, "stopped on the agent", now, ct),
                ObservedStates.Crashed when current == SessionState.Terminating =>
                    await EndAsync(conn, tx, current, status.SessionId, "stopped (crashed while terminating)", now, ct),
                ObservedStates.Crashed => await SessionTransitions.FromAsync(conn, tx, status.SessionId, CanCrash, SessionState.Failed,
                    CommandResults.Reason($"crashed: {(string.IsNullOrWhiteSpace(status.Reason) ? "no reason given" : status.Reason)}"), now, ct),
                _ => null,
            };
            return from is null ? $"no change from {current}" : $"{from} -> changed";
        }, ct);
        if (overLimit) return false;
        if (placedElsewhere is null)
            // Only once committed: an event the database did not take must not change the inventory either, or reconciliation
            // would take the session it reports (say, exited) for one the agent lost.
            Track(connection, status.SessionId, status.State);
        else
        {
            logger.LogWarning(HubEvents.SessionObserved, "Agent {AgentId} reported session {SessionId} {ObservedState}, but that session is placed on agent {Owner}; ignored",
                connection.AgentId, status.SessionId, status.State, placedElsewhere);
            return true;
        }
        logger.LogInformation(HubEvents.SessionObserved, "Agent {AgentId} reported session {SessionId} {ObservedState}: {Outcome}",
            connection.AgentId, status.SessionId, status.State, outcome);
        return true;
    }

    private const string ExitedWithCode = "app exited with code ";

    /// <summary>
    /// The reason an app that exited by itself ends its session with: "app exited", and the exit code when the agent gave
    /// one other than 0 (<c>app exited with code 127</c>: what a user needs to see that the app failed at once). Written
    /// here from the number; any other text the agent sent is not kept, an exit being a normal end whatever it said.
    /// </summary>
    internal static string ExitedReason(string? reported) =>
        reported is not null && reported.StartsWith(ExitedWithCode, StringComparison.Ordinal)
        && int.TryParse(reported.AsSpan(ExitedWithCode.Length), System.Globalization.NumberStyles.AllowLeadingSign,
            System.Globalization.CultureInfo.InvariantCulture, out var code) && code != 0
            ? ExitedWithCode + code.ToString(System.Globalization.CultureInfo.InvariantCulture)
            : "app exited";

    private static async Task<string?> EndAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string? current, string sessionId, string reason, DateTimeOffset now, CancellationToken ct) =>
        await SessionTransitions.EndAsync(conn, tx, sessionId, reason, now, ct) ? current : null;

    /// <summary>Updates the tracked inventory with an observed state.</summary>
    public static void Track(AgentConnection connection, string sessionId, string observedState)
    {
        if (IsTracked(observedState))
            connection.Inventory[sessionId] = observedState;
        else if (observedState is ObservedStates.Exited or ObservedStates.Crashed or ObservedStates.Stopped)
            connection.Inventory.Remove(sessionId);
    }

    /// <summary>Observed states of a session the agent still has (tracked in the inventory); the others end it there.</summary>
    private static bool IsTracked(string observedState) =>
        observedState is ObservedStates.Running or ObservedStates.Hibernated or ObservedStates.Starting;
}
