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
/// tracked, so reconciliation stops them as orphans.
/// </summary>
public sealed class SessionObservations(Db db, TimeProvider time, ILogger<SessionObservations> logger)
{
    private static readonly string[] AwaitingReady = [SessionState.Pending, SessionState.Starting, SessionState.Waking];
    private static readonly string[] CanCrash =
        [SessionState.Pending, SessionState.Starting, SessionState.Running, SessionState.Hibernating, SessionState.Hibernated, SessionState.Waking];

    /// <summary>Call with <see cref="AgentConnection.ProcessingLock"/> held.</summary>
    public async Task ApplyAsync(AgentConnection connection, SessionStatusPayload status, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        string? placedElsewhere = null;
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
            // Before anything can fail, so the inventory matches what the agent said (idempotent if the transaction is retried).
            Track(connection, status.SessionId, status.State);
            if (owner is null) return "ignored: the session is unknown or not placed on any agent";
            var current = await SessionTransitions.CurrentAsync(conn, tx, status.SessionId, ct);
            var from = status.State switch
            {
                ObservedStates.Running => await SessionTransitions.FromAsync(conn, tx, status.SessionId, AwaitingReady, SessionState.Running, null, now, ct),
                ObservedStates.Hibernated => await SessionTransitions.FromAsync(conn, tx, status.SessionId, [SessionState.Hibernating], SessionState.Hibernated, null, now, ct),
                ObservedStates.Exited => await EndAsync(conn, tx, current, status.SessionId, "app exited", now, ct),
                ObservedStates.Stopped => await EndAsync(conn, tx, current, status.SessionId, "stopped on the agent", now, ct),
                ObservedStates.Crashed when current == SessionState.Terminating =>
                    await EndAsync(conn, tx, current, status.SessionId, "stopped (crashed while terminating)", now, ct),
                ObservedStates.Crashed => await SessionTransitions.FromAsync(conn, tx, status.SessionId, CanCrash, SessionState.Failed,
                    CommandResults.Reason($"crashed: {(string.IsNullOrWhiteSpace(status.Reason) ? "no reason given" : status.Reason)}"), now, ct),
                _ => null,
            };
            return from is null ? $"no change from {current}" : $"{from} -> changed";
        }, ct);
        if (placedElsewhere is not null)
        {
            logger.LogWarning(HubEvents.SessionObserved, "Agent {AgentId} reported session {SessionId} {ObservedState}, but that session is placed on agent {Owner}; ignored",
                connection.AgentId, status.SessionId, status.State, placedElsewhere);
            return;
        }
        logger.LogInformation(HubEvents.SessionObserved, "Agent {AgentId} reported session {SessionId} {ObservedState}: {Outcome}",
            connection.AgentId, status.SessionId, status.State, outcome);
    }

    private static async Task<string?> EndAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string? current, string sessionId, string reason, DateTimeOffset now, CancellationToken ct) =>
        await SessionTransitions.EndAsync(conn, tx, sessionId, reason, now, ct) ? current : null;

    /// <summary>Updates the tracked inventory with an observed state.</summary>
    public static void Track(AgentConnection connection, string sessionId, string observedState)
    {
        if (observedState is ObservedStates.Running or ObservedStates.Hibernated or ObservedStates.Starting)
            connection.Inventory[sessionId] = observedState;
        else if (observedState is ObservedStates.Exited or ObservedStates.Crashed or ObservedStates.Stopped)
            connection.Inventory.Remove(sessionId);
    }
}
