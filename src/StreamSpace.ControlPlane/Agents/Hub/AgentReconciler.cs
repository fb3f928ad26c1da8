using Dapper;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Invariant 4: the agent owns reality, the control plane owns intent. Compares the agent's inventory
/// (from hello, kept current by results and events) with the sessions placed on it, in one transaction:
/// adopts sessions the agent runs, stops orphans the database does not want, and fails or ends
/// sessions the agent no longer has. Only the connection the agent row names (<c>agents.connection_id</c>) reconciles.
/// </summary>
public sealed class AgentReconciler(Db db, CommandOutbox outbox, TimeProvider time, ILogger<AgentReconciler> logger)
{
    private static readonly string[] AwaitingStart = [SessionState.Pending, SessionState.Starting];
    private static readonly string[] Established = [SessionState.Running, SessionState.Hibernating, SessionState.Hibernated, SessionState.Waking];

    /// <summary>
    /// The live sessions placed on <c>@agentId</c>, locked (PostgreSQL). The join starts from the agent's live-session
    /// counter (kept by the triggers on <c>sessions</c>, M0004/M0005), so an agent with none reads one counter row, not every
    /// session it ever had: the agent index holds no state, on purpose (M0006: state changes stay HOT updates), and this
    /// runs for every connected agent at each reconciliation interval. Read after the agent row is locked, a counter of 0
    /// is exact: a session becomes live only when a create inserts it, and placement locks the agent row first. With live
    /// sessions the scan still reads all of the agent's sessions, ended ones too, as many as
    /// the ended-session retention keeps (<see cref="Sessions.EndedSessionPruner"/>).
    /// Only the sessions are locked (<c>OF s</c>): the counter row is what every transition on the agent updates.
    /// </summary>
    internal static string PlacedSql(Db db) => $"""
        SELECT s.id, s.state FROM agent_live_sessions l JOIN sessions s ON s.agent_id = l.agent_id
        WHERE l.agent_id = @agentId AND l.live > 0 AND s.state IN ({SessionState.LiveSqlList}){(db.IsPostgres ? $"{db.ForUpdate} OF s" : "")}
        """;

    /// <summary>Call with <see cref="AgentConnection.ProcessingLock"/> held, so the inventory matches what was applied.</summary>
    public async Task<ReconcileSummary> ReconcileAsync(AgentConnection connection, CancellationToken ct)
    {
        var agentId = connection.AgentId;
        var inventory = new Dictionary<string, string>(connection.Inventory, StringComparer.Ordinal);
        var now = time.GetUtcNow();
        var summary = await db.InTransactionAsync<ReconcileSummary?>(async (conn, tx) =>
        {
            // One reconciliation per agent at a time, across connections and replicas: two passes that both
            // saw no stop command for an orphan would each enqueue one. (SQLite's writer lock does this already.)
            // And only by the connection that owns the row: a replaced one (still open on another replica, or not yet
            // closed here) has an outdated inventory that would fail, or stop, what its successor runs.
            var owner = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                $"SELECT connection_id FROM agents WHERE agent_id = @agentId{db.ForUpdate}",
                new { agentId }, tx, cancellationToken: ct));
            if (owner != connection.ConnectionId) return null;
            var placed = (await conn.QueryAsync<(string Id, string State)>(new CommandDefinition(PlacedSql(db), new { agentId }, tx, cancellationToken: ct)))
                .ToDictionary(r => r.Id, r => r.State, StringComparer.Ordinal);
            var commands = (await conn.QueryAsync<(string SessionId, string Type, string State)>(new CommandDefinition(
                $"""
                SELECT session_id, type, state FROM agent_commands
                WHERE agent_id = @agentId AND session_id IS NOT NULL
                  AND (state IN ({CommandRow.OpenStatesSql}) OR (type = @start AND state = @succeeded))
                """,
                new { agentId, start = CommandTypes.SessionStart, succeeded = CommandState.Succeeded }, tx, cancellationToken: ct))).ToList();
            bool HasOpen(string sessionId) => commands.Any(c => c.SessionId == sessionId && !CommandState.IsFinal(c.State));
            bool StartSucceeded(string sessionId) => commands.Any(c => c.SessionId == sessionId && c.Type == CommandTypes.SessionStart && c.State == CommandState.Succeeded);
            bool StopOpen(string sessionId) => commands.Any(c => c.SessionId == sessionId && c.Type == CommandTypes.SessionStop && !CommandState.IsFinal(c.State));

            int adopted = 0, lost = 0, ended = 0, orphans = 0, restopped = 0;
            var lostReason = $"lost on agent {agentId}: the agent no longer reports this session";
            foreach (var (sessionId, state) in placed)
            {
                inventory.TryGetValue(sessionId, out var observed);
                string? to = null;
                string? reason = null;
                switch (observed)
                {
                    case ObservedStates.Running when Array.IndexOf(AwaitingStart, state) >= 0 || (state is SessionState.Waking or SessionState.Hibernating && !HasOpen(sessionId)):
                        to = SessionState.Running;
                        break;
                    case ObservedStates.Hibernated when state is SessionState.Hibernating or SessionState.Waking && !HasOpen(sessionId):
                        to = SessionState.Hibernated;
                        break;
                    case null when Array.IndexOf(Established, state) >= 0 || (Array.IndexOf(AwaitingStart, state) >= 0 && StartSucceeded(sessionId)):
                        to = SessionState.Failed;
                        reason = lostReason;
                        break;
                    case null when state == SessionState.Terminating:
                        // The stop took effect: the session keeps the reason it was terminated for.
                        to = SessionState.Terminated;
                        break;
                }
                if (to is null) continue;
                if (await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, to, reason, now, expectedFrom: state, ct: ct) is null) continue;
                if (to == SessionState.Failed) lost++;
                else if (to == SessionState.Terminated) ended++;
                else adopted++;
            }
            foreach (var sessionId in inventory.Keys)
            {
                // Running on the agent but unknown, finished, or placed elsewhere in the database: stop it. Also one
                // the control plane still means to end (terminating) whose stop failed on the agent (e.g. the agent
                // restarted while stopping it): a failed stop leaves the session terminating, so stop it again.
                if (StopOpen(sessionId)) continue;
                if (placed.TryGetValue(sessionId, out var wanted) && wanted != SessionState.Terminating) continue;
                await outbox.EnqueueAsync(conn, tx, agentId, sessionId, CommandTypes.SessionStop, new { sessionId }, ct);
                if (wanted is null) orphans++;
                else restopped++;
            }
            return new ReconcileSummary(adopted, lost, ended, orphans, restopped);
        }, ct);

        if (summary is not { } done)
        {
            logger.LogInformation(HubEvents.Reconciled,
                "Skipped reconciling agent {AgentId} on connection {ConnectionId}: the agent row names another connection (or none), so this inventory is outdated",
                agentId, connection.ConnectionId);
            return default;
        }
        if (done.OrphansStopped + done.StoppedAgain > 0) outbox.NotifyQueued(agentId);
        if (done != default)
            logger.LogInformation(HubEvents.Reconciled,
                "Reconciled agent {AgentId}: {Adopted} adopted, {Lost} lost, {Ended} ended, {Orphans} orphan(s) to stop, {Again} to stop again after a failed stop",
                agentId, done.Adopted, done.Lost, done.Ended, done.OrphansStopped, done.StoppedAgain);
        return done;
    }
}

public readonly record struct ReconcileSummary(int Adopted, int Lost, int Ended, int OrphansStopped, int StoppedAgain);
