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
/// Applies an agent's acks and results: the command's state and the session's transition commit in ONE
/// transaction through <see cref="SessionStateMachine"/> (invariant 3). Reports for unknown, foreign or
/// already final commands change nothing (a redelivered command's result arrives twice by design).
/// </summary>
public sealed class CommandResults(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options, ILogger<CommandResults> logger)
{
    private const int MaxErrorLength = 2000;
    /// <summary>Width of <c>sessions.state_reason</c>.</summary>
    internal const int MaxReasonLength = 1000;

    private static readonly string[] StartSources = [SessionState.Pending, SessionState.Starting];

    /// <summary>
    /// Applies one agent's acks and then its results, received together, in ONE transaction: on PostgreSQL one
    /// set-based UPDATE for the acks, one for the results and one per kind of session transition, whatever the
    /// batch size. Acks go first: an agent acks a command before it runs it, so an ack can never follow its own
    /// result. Results for the same session apply in the order given. Returns the
    /// results that were applied (unknown, foreign or already final commands are ignored).
    /// </summary>
    public async Task<IReadOnlyList<AppliedResult>> ApplyAsync(string agentId, IReadOnlyList<AckPayload> acks, IReadOnlyList<ResultPayload> results, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        // An ack whose result is in the same batch changes nothing the result does not: the result finishes the
        // command and moves the session from pending or starting alike, in this same transaction. Skipping it saves
        // two statements per command when an agent acks and finishes quickly (the usual case for a busy agent).
        if (acks.Count > 0 && results.Count > 0)
        {
            var finished = results.Select(r => r.CommandId).ToHashSet(StringComparer.Ordinal);
            acks = acks.Where(a => !finished.Contains(a.CommandId)).ToList();
        }
        var applied = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (acks.Count > 0) await AckAllAsync(conn, tx, agentId, acks, now, ct);
            return results.Count > 0 ? await CompleteAllAsync(conn, tx, agentId, results, now, ct) : [];
        }, ct);

        var appliedIds = applied.Select(a => a.Command.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var result in results)
            if (!appliedIds.Contains(result.CommandId))
                logger.LogInformation(HubEvents.CommandResultIgnored, "Ignored result for unknown or already finished command {CommandId} from agent {AgentId}", result.CommandId, agentId);
        foreach (var a in applied)
            logger.LogInformation(HubEvents.CommandCompleted, "Command {CommandId} ({Type}) for session {SessionId} on agent {AgentId} {Outcome}",
                a.Command.Id, a.Command.Type, a.Command.SessionId, agentId, a.Success ? "succeeded" : "failed");
        return applied;
    }

    private async Task AckAllAsync(DbConnection conn, DbTransaction tx, string agentId, IReadOnlyList<AckPayload> acks, DateTimeOffset now, CancellationToken ct)
    {
        var deadline = now + options.Value.CommandResultTimeout;
        var ids = acks.Select(a => a.CommandId).Distinct(StringComparer.Ordinal).ToArray();
        var acked = (await conn.QueryAsync<(string Id, string Type, string? SessionId)>(new CommandDefinition(
            $"""
            UPDATE agent_commands SET state = @acked, next_attempt_at = @deadline, updated_at = @now
            WHERE agent_id = @agentId AND {db.InList("id", "ids")} AND state IN (@pending, @sent)
            RETURNING id, type, session_id
            """,
            new { acked = CommandState.Acked, deadline, now, agentId, ids, pending = CommandState.Pending, sent = CommandState.Sent },
            tx, cancellationToken: ct))).ToList();
        var starting = acked.Where(c => c.Type == CommandTypes.SessionStart && c.SessionId is not null)
            .Select(c => (c.SessionId!, (string?)null)).Distinct().ToList();
        await SessionStateMachine.TryTransitionManyAsync(conn, tx, db.IsPostgres, starting, [SessionState.Pending], SessionState.Starting, now, ct);
    }

    private async Task<List<AppliedResult>> CompleteAllAsync(
        DbConnection conn, DbTransaction tx, string agentId, IReadOnlyList<ResultPayload> results, DateTimeOffset now, CancellationToken ct)
    {
        // A command reported twice in one batch counts once (the first report wins, as it would one at a time).
        var unique = results.DistinctBy(r => r.CommandId, StringComparer.Ordinal).ToList();
        var errors = unique.Select(r => r.Success ? null : Truncate(r.Error is { Length: > 0 } e ? e : "the agent reported a failure without a reason")).ToArray();
        List<CommandRow> done;
        if (db.IsPostgres)
        {
            done = (await conn.QueryAsync<CommandRow>(new CommandDefinition(
                $"""
                UPDATE agent_commands c SET state = v.state, result = v.data, error = v.error, updated_at = @now
                FROM unnest(@ids, @states, @datas, @errors) AS v(id, state, data, error)
                WHERE c.id = v.id AND c.agent_id = @agentId AND c.state IN ({CommandRow.OpenStatesSql})
                RETURNING c.id AS Id, c.agent_id AS AgentId, c.session_id AS SessionId, c.type AS Type, '' AS Payload, c.state AS State, c.attempts AS Attempts
                """,
                new
                {
                    now, agentId, errors,
                    ids = unique.Select(r => r.CommandId).ToArray(),
                    states = unique.Select(r => r.Success ? CommandState.Succeeded : CommandState.Failed).ToArray(),
                    datas = unique.Select(r => r.Data is { } d ? d.GetRawText() : null).ToArray(),
                },
                tx, cancellationToken: ct))).ToList();
        }
        else
        {
            done = [];
            for (var i = 0; i < unique.Count; i++)
            {
                var r = unique[i];
                var row = await conn.QuerySingleOrDefaultAsync<CommandRow?>(new CommandDefinition(
                    $"""
                    UPDATE agent_commands SET state = @state, result = @data, error = @error, updated_at = @now
                    WHERE id = @id AND agent_id = @agentId AND state IN ({CommandRow.OpenStatesSql})
                    RETURNING {CommandRow.Columns}
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

        var byId = unique.Select((r, i) => (r, i)).ToDictionary(x => x.r.CommandId, x => (x.r.Success, Error: errors[x.i]), StringComparer.Ordinal);
        var order = unique.Select((r, i) => (r.CommandId, i)).ToDictionary(x => x.CommandId, x => x.i, StringComparer.Ordinal);
        var applied = done.OrderBy(c => order[c.Id]).Select(c => new AppliedResult(c, byId[c.Id].Success, byId[c.Id].Error)).ToList();
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
                var sessions = group.Select(a => (a.Command.SessionId!, move.Reason is null ? null : (string?)Reason(move.Reason(a)))).ToList();
                await SessionStateMachine.TryTransitionManyAsync(conn, tx, db.IsPostgres, sessions, move.From, move.To, now, ct);
            }
        }
        return applied;
    }

    /// <summary>How a command's result moves its session (invariant 3); null: it does not (a failed stop leaves the
    /// session terminating, and reconciliation ends it once the agent no longer reports it).</summary>
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

    private static string Truncate(string s) => s.Length <= MaxErrorLength ? s : s[..MaxErrorLength];

    internal static string Reason(string s) => s.Length <= MaxReasonLength ? s : s[..MaxReasonLength];
}

/// <summary>A result that changed its command: the command as it was, and what the agent reported.</summary>
public sealed record AppliedResult(CommandRow Command, bool Success, string? Error);
