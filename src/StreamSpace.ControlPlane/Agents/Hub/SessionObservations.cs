using Dapper;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Applies <c>session.status</c> events (what the agent observed) to the sessions table through the state
/// machine, and keeps the connection's tracked inventory current. Events about sessions that are not
/// placed on the reporting agent change nothing.
/// </summary>
public sealed class SessionObservations(Db db, TimeProvider time, ILogger<SessionObservations> logger)
{
    private static readonly string[] AwaitingReady = [SessionState.Pending, SessionState.Starting, SessionState.Waking];
    private static readonly string[] CanCrash =
        [SessionState.Pending, SessionState.Starting, SessionState.Running, SessionState.Hibernating, SessionState.Hibernated, SessionState.Waking];

    /// <summary>Call with <see cref="AgentConnection.ProcessingLock"/> held.</summary>
    public async Task ApplyAsync(AgentConnection connection, SessionStatusPayload status, CancellationToken ct)
    {
        Track(connection, status.SessionId, status.State);
        var now = time.GetUtcNow();
        var outcome = await db.InTransactionAsync(async (conn, tx) =>
        {
            var owner = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                $"SELECT agent_id FROM sessions WHERE id = @id{db.ForUpdate}", new { id = status.SessionId }, tx, cancellationToken: ct));
            if (owner != connection.AgentId) return "ignored: the session is not placed on this agent";
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
