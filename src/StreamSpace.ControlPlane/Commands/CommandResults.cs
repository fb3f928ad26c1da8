using System.Data.Common;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Applies agents' acks and results: the command's state and the session's transition commit in ONE
/// transaction through <see cref="SessionStateMachine"/> (invariant 3). Reports for unknown, foreign or
/// already final commands change nothing (a redelivered command's result arrives twice by design).
/// Reports that arrive together from different agents are group-committed
/// (<see cref="GroupCommitQueue{TItem, TResult}"/>): with many agents each reporting a little, the database sees
/// one transaction of a few set-based statements instead of one transaction per agent.
/// </summary>
public sealed class CommandResults : IAsyncDisposable
{
    /// <summary>Width of <c>agent_commands.error</c>.</summary>
    internal const int MaxErrorLength = 2000;
    /// <summary>Width of <c>sessions.state_reason</c>.</summary>
    internal const int MaxReasonLength = 1000;
    /// <summary>Agents' report batches per transaction (each is at most the hub's report batch).</summary>
    internal const int MaxAgentsPerTransaction = 64;

    private static readonly string[] StartSources = [SessionState.Pending, SessionState.Starting];

    private readonly Db db;
    private readonly TimeProvider time;
    private readonly IOptions<StreamSpaceOptions> options;
    private readonly ILogger<CommandResults> logger;
    private readonly GroupCommitQueue<AgentReports, ReportOutcome> _queue;

    public CommandResults(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options, ILogger<CommandResults> logger)
    {
        this.db = db;
        this.time = time;
        this.options = options;
        this.logger = logger;
        _queue = new GroupCommitQueue<AgentReports, ReportOutcome>(ApplyBatchAsync, MaxAgentsPerTransaction);
    }

    public ValueTask DisposeAsync() => _queue.DisposeAsync();

    /// <summary>
    /// Applies one agent's acks and then its results, received together, in ONE transaction (shared with other agents'
    /// reports queued at the same time): on PostgreSQL one set-based UPDATE for the acks, one for the results and one
    /// per kind of session transition, whatever the batch size. Acks go first: an agent acks a command before it runs
    /// it, so an ack can never follow its own result. Results for the same session apply in the order given. Returns
    /// the results that were applied (unknown, foreign or already final commands are ignored).
    /// </summary>
    public async Task<IReadOnlyList<AppliedResult>> ApplyAsync(string agentId, IReadOnlyList<AckPayload> acks, IReadOnlyList<ResultPayload> results, CancellationToken ct)
    {
        var outcome = await _queue.EnqueueAsync(new AgentReports(agentId, acks, results), ct);
        if (outcome.Error is { } error) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        var applied = outcome.Applied!;
        var appliedIds = applied.Select(a => a.Command.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var result in results)
            if (!appliedIds.Contains(result.CommandId))
                logger.LogInformation(HubEvents.CommandResultIgnored, "Ignored result for unknown or already finished command {CommandId} from agent {AgentId}", result.CommandId, agentId);
        foreach (var a in applied)
            logger.LogInformation(HubEvents.CommandCompleted, "Command {CommandId} ({Type}) for session {SessionId} on agent {AgentId} {Outcome}",
                a.Command.Id, a.Command.Type, a.Command.SessionId, agentId, a.Success ? "succeeded" : "failed");
        return applied;
    }

    /// <summary>
    /// Applies several agents' reports in one transaction. If that fails for a reason other than a database outage,
    /// each agent's reports are applied on their own, so one agent's bad report fails only that agent's batch.
    /// </summary>
    private async Task<IReadOnlyList<ReportOutcome>> ApplyBatchAsync(IReadOnlyList<AgentReports> batch, CancellationToken ct)
    {
        try
        {
            return (await ApplyTogetherAsync(batch, ct)).Select(a => new ReportOutcome(a, null)).ToList();
        }
        catch (Exception ex) when (batch.Count > 1 && ex is not OperationCanceledException && !ErrorHandling.IsDatabaseOutage(ex))
        {
            logger.LogWarning(ex, "Applying the reports of {Count} agents together failed; applying each agent's on its own", batch.Count);
        }
        var outcomes = new List<ReportOutcome>(batch.Count);
        foreach (var item in batch)
        {
            try
            {
                outcomes.Add(new ReportOutcome((await ApplyTogetherAsync([item], ct))[0], null));
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                outcomes.Add(new ReportOutcome(null, ex));
            }
        }
        return outcomes;
    }

    private async Task<IReadOnlyList<AppliedResult>[]> ApplyTogetherAsync(IReadOnlyList<AgentReports> batch, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var acks = new List<(string AgentId, string CommandId)>();
        var results = new List<(string AgentId, ResultPayload Result)>();
        foreach (var item in batch)
        {
            // An ack whose result is in the same batch changes nothing the result does not: the result finishes the
            // command and moves the session from pending or starting alike, in this same transaction. Skipping it saves
            // two statements per command when an agent acks and finishes quickly (the usual case for a busy agent).
            var finished = item.Results.Select(r => r.CommandId).ToHashSet(StringComparer.Ordinal);
            acks.AddRange(item.Acks.Where(a => !finished.Contains(a.CommandId)).Select(a => (item.AgentId, a.CommandId)));
            results.AddRange(item.Results.Select(r => (item.AgentId, r)));
        }
        var applied = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (acks.Count > 0) await AckAllAsync(conn, tx, acks, now, ct);
            return results.Count > 0 ? await CompleteAllAsync(conn, tx, results, now, ct) : [];
        }, ct);
        // Each item's applied results in its report order (CompleteAllAsync keeps the order given); a command reported in two
        // items (an agent's old and new connection) belongs to the first, as it won.
        var unclaimed = applied.ToList();
        return batch.Select(item =>
        {
            var ids = item.Results.Select(r => r.CommandId).ToHashSet(StringComparer.Ordinal);
            var mine = unclaimed.Where(a => a.Command.AgentId == item.AgentId && ids.Contains(a.Command.Id)).ToList();
            unclaimed.RemoveAll(mine.Contains);
            return (IReadOnlyList<AppliedResult>)mine;
        }).ToArray();
    }

    private async Task AckAllAsync(DbConnection conn, DbTransaction tx, List<(string AgentId, string CommandId)> acks, DateTimeOffset now, CancellationToken ct)
    {
        var deadline = now + options.Value.CommandResultTimeout;
        var unique = acks.Distinct().ToList();
        List<(string Id, string AgentId, string Type, string? SessionId)> acked;
        if (db.IsPostgres)
        {
            acked = (await conn.QueryAsync<(string Id, string AgentId, string Type, string? SessionId)>(new CommandDefinition(
                """
                UPDATE agent_commands c SET state = @acked, next_attempt_at = @deadline, updated_at = @now
                FROM unnest(@ids, @agents) AS v(id, agent_id)
                WHERE c.id = v.id AND c.agent_id = v.agent_id AND c.state IN (@pending, @sent)
                RETURNING c.id, c.agent_id, c.type, c.session_id
                """,
                new
                {
                    acked = CommandState.Acked, deadline, now, pending = CommandState.Pending, sent = CommandState.Sent,
                    ids = unique.Select(a => a.CommandId).ToArray(), agents = unique.Select(a => a.AgentId).ToArray(),
                },
                tx, cancellationToken: ct))).ToList();
        }
        else
        {
            acked = [];
            foreach (var (agentId, commandId) in unique)
                acked.AddRange(await conn.QueryAsync<(string Id, string AgentId, string Type, string? SessionId)>(new CommandDefinition(
                    """
                    UPDATE agent_commands SET state = @acked, next_attempt_at = @deadline, updated_at = @now
                    WHERE agent_id = @agentId AND id = @commandId AND state IN (@pending, @sent)
                    RETURNING id, agent_id, type, session_id
                    """,
                    new { acked = CommandState.Acked, deadline, now, agentId, commandId, pending = CommandState.Pending, sent = CommandState.Sent },
                    tx, cancellationToken: ct)));
        }
        // Only a session placed on the acking agent starts (the state machine checks the placement).
        var starting = acked.Where(c => c.Type == CommandTypes.SessionStart && c.SessionId is not null)
            .DistinctBy(c => c.SessionId).Select(c => (c.SessionId!, c.AgentId, (string?)null)).ToList();
        await SessionStateMachine.TryTransitionManyAsync(conn, tx, db.IsPostgres, starting, [SessionState.Pending], SessionState.Starting, now, ct);
    }

    private async Task<List<AppliedResult>> CompleteAllAsync(
        DbConnection conn, DbTransaction tx, List<(string AgentId, ResultPayload Result)> results, DateTimeOffset now, CancellationToken ct)
    {
        // A command reported twice in one batch counts once (the first report wins, as it would one at a time).
        var unique = results.DistinctBy(r => (r.AgentId, r.Result.CommandId)).ToList();
        var errors = unique.Select(r => r.Result.Success ? null : Truncate(r.Result.Error is { Length: > 0 } e ? e : "the agent reported a failure without a reason")).ToArray();
        List<CommandRow> done;
        if (db.IsPostgres)
        {
            done = (await conn.QueryAsync<CommandRow>(new CommandDefinition(
                $"""
                UPDATE agent_commands c SET state = v.state, result = v.data, error = v.error, updated_at = @now
                FROM unnest(@ids, @agents, @states, @datas, @errors) AS v(id, agent_id, state, data, error)
                WHERE c.id = v.id AND c.agent_id = v.agent_id AND c.state IN ({CommandRow.OpenStatesSql})
                RETURNING c.id AS Id, c.agent_id AS AgentId, c.session_id AS SessionId, c.type AS Type, '' AS Payload, c.state AS State, c.attempts AS Attempts,
                    (SELECT s.agent_id FROM sessions s WHERE s.id = c.session_id) AS SessionAgentId
                """,
                new
                {
                    now, errors,
                    ids = unique.Select(r => r.Result.CommandId).ToArray(),
                    agents = unique.Select(r => r.AgentId).ToArray(),
                    states = unique.Select(r => r.Result.Success ? CommandState.Succeeded : CommandState.Failed).ToArray(),
                    datas = unique.Select(r => r.Result.Data is { } d ? d.GetRawText() : null).ToArray(),
                },
                tx, cancellationToken: ct))).ToList();
        }
        else
        {
            done = [];
            for (var i = 0; i < unique.Count; i++)
            {
                var (agentId, r) = unique[i];
                var row = await conn.QuerySingleOrDefaultAsync<CommandRow?>(new CommandDefinition(
                    $"""
                    UPDATE agent_commands SET state = @state, result = @data, error = @error, updated_at = @now
                    WHERE id = @id AND agent_id = @agentId AND state IN ({CommandRow.OpenStatesSql})
                    RETURNING {CommandRow.Columns}, (SELECT s.agent_id FROM sessions s WHERE s.id = agent_commands.session_id) AS SessionAgentId
                    """,
                    new
                    {
                        state = r.Success ? CommandState.Succeeded : CommandState.Failed, data = r.Data is { } d ? d.GetRawText() : null,
                        error = errors[i], now, id = r.CommandId, agentId,
                    },
                    tx, cancellationToken: ct));
                if (row is not null) done.Add(row);
            }
        }

        var byKey = unique.Select((r, i) => (r, i)).ToDictionary(x => (x.r.AgentId, x.r.Result.CommandId), x => (x.r.Result.Success, Error: errors[x.i], Order: x.i));
        var applied = done.Select(c => (c, info: byKey[(c.AgentId, c.Id)])).OrderBy(x => x.info.Order)
            .Select(x => new AppliedResult(x.c, x.info.Success, x.info.Error)).ToList();
        // A result finishes its command but moves only a session placed on the reporting agent (the state machine checks
        // that): an orphan stop of an agent's copy of another agent's session must not end it there.
        foreach (var a in applied)
            if (a.Command.SessionAgentId is { } placedOn && placedOn != a.Command.AgentId)
                logger.LogWarning(HubEvents.CommandResultIgnored,
                    "Command {CommandId} ({Type}) of agent {AgentId} finished, but session {SessionId} is placed on agent {Owner}: the session is left alone",
                    a.Command.Id, a.Command.Type, a.Command.AgentId, a.Command.SessionId, placedOn);
        // Set-based per kind of transition, in waves: a session's second result in this batch goes in the next
        // wave, so each session still moves in the order its results were sent.
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var waves = applied.Where(a => a.Command.SessionId is not null)
            .Select(a => (Wave: seen[a.Command.SessionId!] = seen.GetValueOrDefault(a.Command.SessionId!) + 1, Result: a))
            .ToList();
        foreach (var wave in waves.GroupBy(w => w.Wave).OrderBy(g => g.Key))
        {
            foreach (var group in wave.Select(w => w.Result).GroupBy(a => (a.Command.Type, a.Success)))
            {
                if (Move(group.Key.Type, group.Key.Success) is not { } move) continue;
                var sessions = group.Select(a => (a.Command.SessionId!, a.Command.AgentId, move.Reason is null ? null : (string?)Reason(move.Reason(a)))).ToList();
                await SessionStateMachine.TryTransitionManyAsync(conn, tx, db.IsPostgres, sessions, move.From, move.To, now, ct);
            }
        }
        return applied;
    }

    /// <summary>How a command's result moves its session (invariant 3); null: it does not (a failed stop leaves the
    /// session terminating: reconciliation stops it again while the agent reports it and ends it once it does not).</summary>
    private static (string[] From, string To, Func<AppliedResult, string>? Reason)? Move(string type, bool success) => (type, success) switch
    {
        (CommandTypes.SessionStart, true) => (StartSources, SessionState.Running, null),
        (CommandTypes.SessionStart, false) => (StartSources, SessionState.Failed, a => $"start failed on agent {a.Command.AgentId}: {a.Error}"),
        (CommandTypes.SessionStop, true) => ([SessionState.Terminating], SessionState.Terminated, null),
        (CommandTypes.SessionHibernate, true) => ([SessionState.Hibernating], SessionState.Hibernated, null),
        (CommandTypes.SessionHibernate, false) => ([SessionState.Hibernating], SessionState.Running, a => $"hibernate failed on agent {a.Command.AgentId}: {a.Error}"),
        (CommandTypes.SessionWake, true) => ([SessionState.Waking], SessionState.Running, null),
        (CommandTypes.SessionWake, false) => ([SessionState.Waking], SessionState.Hibernated, a => $"wake failed on agent {a.Command.AgentId}: {a.Error}"),
        _ => null,
    };

    /// <summary>An agent's error as <c>agent_commands.error</c> keeps it.</summary>
    private static string Truncate(string s) => StorableText.Truncate(s, MaxErrorLength);

    /// <summary>A reason as <c>sessions.state_reason</c> keeps it.</summary>
    internal static string Reason(string s) => StorableText.Truncate(s, MaxReasonLength);
}

/// <summary>A result that changed its command: the command as it was, and what the agent reported.</summary>
public sealed record AppliedResult(CommandRow Command, bool Success, string? Error);

/// <summary>One agent's acks and results, received together.</summary>
internal sealed record AgentReports(string AgentId, IReadOnlyList<AckPayload> Acks, IReadOnlyList<ResultPayload> Results);

/// <summary>What applying one <see cref="AgentReports"/> gave: the applied results, or why it failed.</summary>
internal sealed record ReportOutcome(IReadOnlyList<AppliedResult>? Applied, Exception? Error);
