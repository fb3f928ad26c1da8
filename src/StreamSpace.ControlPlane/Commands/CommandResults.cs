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

    /// <summary>The agent received the command: no more ack-timeout redelivery; a start moves pending → starting.</summary>
    public async Task AckAsync(string agentId, AckPayload ack, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        await db.InTransactionAsync(async (conn, tx) =>
        {
            var command = await LoadAsync(conn, tx, agentId, ack.CommandId, ct);
            if (command is null || command.State is not (CommandState.Pending or CommandState.Sent)) return 0;
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE agent_commands SET state = @acked, next_attempt_at = @deadline, updated_at = @now WHERE id = @id AND state = @state",
                new { acked = CommandState.Acked, deadline = now + options.Value.CommandResultTimeout, now, id = command.Id, state = command.State },
                tx, cancellationToken: ct));
            if (command.Type == CommandTypes.SessionStart && command.SessionId is { } sessionId)
                await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, SessionState.Starting, null, now, expectedFrom: SessionState.Pending, ct: ct);
            return 1;
        }, ct);
    }

    /// <summary>Finishes the command and moves its session. Returns the command when it was applied, null when ignored.</summary>
    public async Task<CommandRow?> CompleteAsync(string agentId, ResultPayload result, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var applied = await db.InTransactionAsync(async (conn, tx) =>
        {
            var command = await LoadAsync(conn, tx, agentId, result.CommandId, ct);
            if (command is null || CommandState.IsFinal(command.State)) return null;
            var error = result.Success ? null : Truncate(result.Error is { Length: > 0 } e ? e : "the agent reported a failure without a reason");
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE agent_commands SET state = @state, result = @data, error = @error, updated_at = @now WHERE id = @id AND state = @previous",
                new
                {
                    state = result.Success ? CommandState.Succeeded : CommandState.Failed,
                    data = result.Data is { } d ? d.GetRawText() : null, error, now, id = command.Id, previous = command.State,
                },
                tx, cancellationToken: ct));
            if (command.SessionId is { } sessionId)
                await MoveSessionAsync(conn, tx, command, sessionId, result.Success, error, now, ct);
            return command;
        }, ct);

        if (applied is null)
            logger.LogInformation(HubEvents.CommandResultIgnored, "Ignored result for unknown or already finished command {CommandId} from agent {AgentId}", result.CommandId, agentId);
        else
            logger.LogInformation(HubEvents.CommandCompleted, "Command {CommandId} ({Type}) for session {SessionId} on agent {AgentId} {Outcome}",
                applied.Id, applied.Type, applied.SessionId, agentId, result.Success ? "succeeded" : "failed");
        return applied;
    }

    private static async Task MoveSessionAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, CommandRow command, string sessionId,
        bool success, string? error, DateTimeOffset now, CancellationToken ct)
    {
        switch (command.Type, success)
        {
            case (CommandTypes.SessionStart, true):
                await SessionTransitions.FromAsync(conn, tx, sessionId, StartSources, SessionState.Running, null, now, ct);
                break;
            case (CommandTypes.SessionStart, false):
                await SessionTransitions.FromAsync(conn, tx, sessionId, StartSources, SessionState.Failed,
                    Reason($"start failed on agent {command.AgentId}: {error}"), now, ct);
                break;
            case (CommandTypes.SessionStop, true):
                await SessionTransitions.FromAsync(conn, tx, sessionId, [SessionState.Terminating], SessionState.Terminated, null, now, ct);
                break;
            case (CommandTypes.SessionHibernate, true):
                await SessionTransitions.FromAsync(conn, tx, sessionId, [SessionState.Hibernating], SessionState.Hibernated, null, now, ct);
                break;
            case (CommandTypes.SessionHibernate, false):
                await SessionTransitions.FromAsync(conn, tx, sessionId, [SessionState.Hibernating], SessionState.Running,
                    Reason($"hibernate failed on agent {command.AgentId}: {error}"), now, ct);
                break;
            case (CommandTypes.SessionWake, true):
                await SessionTransitions.FromAsync(conn, tx, sessionId, [SessionState.Waking], SessionState.Running, null, now, ct);
                break;
            case (CommandTypes.SessionWake, false):
                await SessionTransitions.FromAsync(conn, tx, sessionId, [SessionState.Waking], SessionState.Hibernated,
                    Reason($"wake failed on agent {command.AgentId}: {error}"), now, ct);
                break;
            // A failed stop leaves the session terminating: reconciliation ends it once the agent no longer reports it.
        }
    }

    private Task<CommandRow?> LoadAsync(System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string agentId, string commandId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<CommandRow?>(new CommandDefinition(
            $"SELECT {CommandRow.Columns} FROM agent_commands WHERE id = @commandId AND agent_id = @agentId{db.ForUpdate}",
            new { commandId, agentId }, tx, cancellationToken: ct));

    private static string Truncate(string s) => s.Length <= MaxErrorLength ? s : s[..MaxErrorLength];

    internal static string Reason(string s) => s.Length <= MaxReasonLength ? s : s[..MaxReasonLength];
}
