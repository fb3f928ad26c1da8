using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>
/// Deletes ended sessions (terminated, failed) once they ended longer than <see cref="StreamSpaceOptions.SessionRetention"/>
/// ago, with their finished commands and viewer tickets, at start and every <see cref="StreamSpaceOptions.SessionPruneInterval"/>;
/// a retention of 0 keeps them forever. Without this every session ever created stays in <c>sessions</c>, and what reads
/// live sessions (lists filtered by state, the idle sweep, reconciliation) reads the whole history, which no index bounds:
/// the indexes leave <c>state</c> out on purpose (M0006) so that state changes stay HOT updates. The audit log is not
/// touched: it is the lasting record of who did what to which session.
/// </summary>
/// <remarks>
/// <para>When a session ended is its <c>updated_at</c>: only <see cref="SessionStateMachine"/> writes it, at each state
/// change, and a final state has none after it. A session is also created before it ends, so <c>created_at</c> before the
/// cutoff is implied, and requiring it lets the list-order index (<c>ix_sessions_created</c>, M0007) find the candidates
/// instead of a scan of every session.</para>
/// <para>Kept whatever their age: a session with an open command (a stop the reconciler wrote for it because its agent
/// still reports it, say), and one whose start or stop expired without its agent's word since
/// (<see cref="Agents.AgentsApi.UnconfirmedCommandSql"/>, kept past its retention by <see cref="CommandPruner"/> for the
/// same reason): the agent may still run it, and the agent delete's 409 and the user delete's audit entry count such sessions through their row. Kept too,
/// per user and agent, the newest ended session that had a persistent home there while no newer one exists: sessions are
/// the only record of where a user's homes are, which the user delete reads to send each agent its <c>home.delete</c>.</para>
/// <para>Sessions go in batches of <see cref="BatchSize"/>, each one transaction that deletes the sessions and then their
/// finished commands and viewer tickets, so a large backlog (the first run after an upgrade) never holds locks for long
/// (measured on PostgreSQL, 520 000 ended sessions in a table with these indexes: ~25 ms to find a batch through <c>ix_sessions_created</c>; the
/// newer-home check is a row comparison so that it reads <c>ix_sessions_user_created</c> in order and stops at the first
/// newer session: 0.06 ms a candidate, where an OR of the two columns collected all of the user's newer sessions first, 0.56 ms).
/// Ended sessions are not live, so the live-session counters' triggers (M0004, M0005) change nothing.</para>
/// </remarks>
internal sealed class EndedSessionPruner(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options, ILogger<EndedSessionPruner> logger) : BackgroundService
{
    /// <summary>A long prune says how far it got this often.</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Sessions deleted per transaction. Lower than <see cref="CommandPruner.BatchSize"/>: each session takes its commands
    /// and tickets with it, and the deleted ids are bound as parameters of those deletes (SQLite takes up to 32 766).
    /// </summary>
    internal int BatchSize { get; init; } = 1000;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (o.SessionRetention == TimeSpan.Zero)
        {
            logger.LogInformation(HubEvents.SessionsPruned, "Ended sessions are kept forever (StreamSpace__SessionRetention is 0)");
            return;
        }
        using var timer = new PeriodicTimer(o.SessionPruneInterval, time);
        try
        {
            do
            {
                try
                {
                    await PruneAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // An outage or a lock timeout: the rows are still there next time, nothing is lost by waiting.
                    logger.LogWarning(HubEvents.SessionsPruned, "Could not prune ended sessions, trying again in {Interval}: {Error}",
                        o.SessionPruneInterval, ex.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Deletes every prunable session (in batches) and returns how many went; none with a retention of 0.</summary>
    internal async Task<int> PruneAsync(CancellationToken ct)
    {
        var retention = options.Value.SessionRetention;
        if (retention == TimeSpan.Zero) return 0;
        var cutoff = time.GetUtcNow() - retention;
        var sessionsSql =
            $"""
            DELETE FROM sessions WHERE id IN (
                SELECT s.id FROM sessions s
                WHERE s.created_at < @cutoff AND s.updated_at < @cutoff AND s.state IN (@terminated, @failed)
                  AND NOT EXISTS (SELECT 1 FROM agent_commands c WHERE c.session_id = s.id AND c.state IN ({CommandRow.OpenStatesSql}))
                  AND NOT EXISTS (SELECT 1 FROM agent_commands c JOIN agents a ON a.agent_id = c.agent_id
                                  WHERE c.session_id = s.id AND c.state = @expired AND {Agents.AgentsApi.UnconfirmedCommandSql})
                  AND NOT (s.persistent_home = @yes AND s.agent_id IS NOT NULL
                           AND NOT EXISTS (SELECT 1 FROM sessions n
                                           WHERE n.user_id = s.user_id AND n.agent_id = s.agent_id AND n.persistent_home = @yes
                                             AND (n.created_at, n.id) > (s.created_at, s.id)))
                LIMIT @batch)
            RETURNING id
            """;
        // Open commands stay: one written while this ran (reconciliation stopping the session on its agent) ends by itself.
        var commandsSql = $"DELETE FROM agent_commands WHERE {db.InList("session_id", "ids")} AND state IN ({CommandRow.FinishedStatesSql})";
        var ticketsSql = $"DELETE FROM viewer_tickets WHERE {db.InList("session_id", "ids")}";
        var total = 0;
        var lastProgress = time.GetTimestamp();
        while (true)
        {
            var deleted = await db.InTransactionAsync(async (conn, tx) =>
            {
                var ids = (await conn.QueryAsync<string>(new CommandDefinition(sessionsSql,
                    new
                    {
                        cutoff, terminated = SessionState.Terminated, failed = SessionState.Failed, yes = true,
                        start = CommandTypes.SessionStart, stop = CommandTypes.SessionStop, expired = CommandState.Expired, batch = BatchSize,
                    }, tx, cancellationToken: ct))).ToArray();
                if (ids.Length > 0)
                {
                    await conn.ExecuteAsync(new CommandDefinition(commandsSql, new { ids }, tx, cancellationToken: ct));
                    await conn.ExecuteAsync(new CommandDefinition(ticketsSql, new { ids }, tx, cancellationToken: ct));
                }
                return ids.Length;
            }, ct);
            total += deleted;
            // Not "fewer than a batch": another replica's pruner (or a test's) deleting rows this batch had selected makes a
            // short batch while older sessions are still left. An empty one is the end.
            if (deleted == 0) break;
            if (time.GetElapsedTime(lastProgress) >= ProgressInterval)
            {
                lastProgress = time.GetTimestamp();
                logger.LogInformation(HubEvents.SessionsPruned, "Pruning sessions that ended more than {Retention} ago: {Count} deleted so far", retention, total);
            }
        }
        if (total > 0)
            logger.LogInformation(HubEvents.SessionsPruned,
                "Pruned {Count} sessions that ended more than {Retention} ago (before {Cutoff:u}), with their finished commands and viewer tickets",
                total, retention, cutoff);
        return total;
    }
}
