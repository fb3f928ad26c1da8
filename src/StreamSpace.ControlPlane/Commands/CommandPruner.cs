using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Deletes finished commands (succeeded, failed, expired) once they are older than
/// <see cref="StreamSpaceOptions.CommandRetention"/>, at start and every <see cref="StreamSpaceOptions.CommandPruneInterval"/>.
/// The outbox writes a row per command (invariant 2) and nothing else ever removes one: without this the table
/// grows with every session start, stop and viewer connection, and <c>stream.open</c> rows keep their spent data
/// tokens (design deviation 5). Open commands are never pruned, whatever their age: they end by result or expiry.
/// </summary>
/// <remarks>
/// Two exceptions to "finished and old". The succeeded start of a session that is still live is kept, because
/// reconciliation reads it (a session still pending or starting whose start succeeded but which the agent no
/// longer reports was lost). An expired start or stop the agent has not answered since with a hello is kept, because
/// <c>DELETE /api/v1/agents/{id}</c> refuses while such rows say the agent may still run that session
/// (<see cref="Agents.AgentsApi.UnconfirmedCommandSql"/>): a host away longer than the retention must still not be
/// deleted without <c>?force=true</c>, or its sessions run on unmanaged when it returns. Rows go in batches of <see cref="BatchSize"/>, each its own short statement, so a
/// large backlog (the first run after an upgrade) never holds locks on the outbox for long.
/// </remarks>
internal sealed class CommandPruner(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options, ILogger<CommandPruner> logger) : BackgroundService
{
    /// <summary>A long prune (a backlog after an upgrade: 500 000 rows took ~6 s) says how far it got this often.</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    /// <summary>Rows deleted per statement.</summary>
    internal int BatchSize { get; init; } = 5000;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.CommandPruneInterval, time);
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
                    logger.LogWarning(HubEvents.CommandsPruned, "Could not prune finished commands, trying again in {Interval}: {Error}",
                        options.Value.CommandPruneInterval, ex.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Deletes every prunable row (in batches) and returns how many went.</summary>
    internal async Task<int> PruneAsync(CancellationToken ct)
    {
        var retention = options.Value.CommandRetention;
        var cutoff = time.GetUtcNow() - retention;
        // updated_at < cutoff is the rule. A finished row's next_attempt_at is at most one ack or result deadline past
        // its last update, so also requiring it before the cutoff delays such a row by one pass at most, and lets the
        // due-commands index (state, next_attempt_at) find the candidates without scanning the whole history.
        var sql =
            $"""
            DELETE FROM agent_commands WHERE id IN (
                SELECT c.id FROM agent_commands c
                WHERE c.state IN ({CommandRow.FinishedStatesSql}) AND c.next_attempt_at < @cutoff AND c.updated_at < @cutoff
                  AND NOT (c.type = @start AND c.state = @succeeded
                           AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = c.session_id AND s.state IN ({SessionState.LiveSqlList})))
                  AND NOT (c.state = @expired
                           AND EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = c.agent_id AND {Agents.AgentsApi.UnconfirmedCommandSql}))
                LIMIT @batch)
            """;
        var total = 0;
        var lastProgress = time.GetTimestamp();
        while (true)
        {
            int deleted;
            await using (var conn = await db.OpenAsync(ct))
            {
                deleted = await conn.ExecuteAsync(new CommandDefinition(sql,
                    new
                    {
                        cutoff, start = CommandTypes.SessionStart, stop = CommandTypes.SessionStop, succeeded = CommandState.Succeeded,
                        expired = CommandState.Expired, batch = BatchSize,
                    }, cancellationToken: ct));
            }
            total += deleted;
            if (deleted < BatchSize) break;
            if (time.GetElapsedTime(lastProgress) >= ProgressInterval)
            {
                lastProgress = time.GetTimestamp();
                logger.LogInformation(HubEvents.CommandsPruned, "Pruning finished commands older than {Retention}: {Count} deleted so far", retention, total);
            }
        }
        if (total > 0)
            logger.LogInformation(HubEvents.CommandsPruned, "Pruned {Count} finished commands older than {Retention} (finished before {Cutoff:u})", total, retention, cutoff);
        return total;
    }
}
