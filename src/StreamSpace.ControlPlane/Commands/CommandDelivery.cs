using System.Text.Json;
using System.Threading.Channels;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Sends due commands from <c>agent_commands</c> to the agents connected to this replica (invariant 2).
/// The table is the only truth: delivery runs when a command is queued here, when an agent connects,
/// and on a periodic poll that also picks up commands written by other replicas. Each send is claimed
/// with a compare-and-set on <c>attempts</c>, so two loops or replicas never send the same attempt twice.
/// The same poll expires commands past their TTL and fails their sessions.
/// </summary>
public sealed class CommandDelivery : BackgroundService
{
    private readonly Db _db;
    private readonly AgentConnectionRegistry _registry;
    private readonly HubMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly StreamSpaceOptions _options;
    private readonly ILogger<CommandDelivery> _logger;
    private readonly CommandOutbox _outbox;
    private readonly DatabaseOutageLog _outage;
    private readonly Channel<DeliveryRequest> _requests = Channel.CreateUnbounded<DeliveryRequest>(new UnboundedChannelOptions { SingleReader = true });

    public CommandDelivery(Db db, AgentConnectionRegistry registry, CommandOutbox outbox, HubMetrics metrics, TimeProvider time,
        IOptions<StreamSpaceOptions> options, ILogger<CommandDelivery> logger)
    {
        _db = db;
        _registry = registry;
        _metrics = metrics;
        _time = time;
        _options = options.Value;
        _logger = logger;
        _outage = new DatabaseOutageLog(logger, time, "Command delivery", _options.CommandPollInterval);
        _outbox = outbox;
        _outbox.Queued += OnQueued;
        _outbox.HandedOff += OnHandedOff;
        _outbox.CanHandOff = agentId => _registry.Find(agentId) is { } c && !c.Lifetime.IsCancellationRequested;
        _outbox.ReserveHandOff = (agentId, commandId) =>
            _registry.Find(agentId) is { } c && !c.Lifetime.IsCancellationRequested && c.ReserveHandOff(commandId);
        _outbox.ForgetHandOff = (agentId, commandId) => _registry.Find(agentId)?.ForgetDelivery(commandId);
    }

    /// <summary>
    /// Agents whose resend-on-reconnect pass failed (a database error, a deadlock victim): the next pass makes it again.
    /// Their in-flight commands are not due (an acked one waits CommandResultTimeout), so the poll alone would leave a
    /// result lost with the old connection unasked for until then. Touched only by the delivery loop.
    /// </summary>
    private readonly HashSet<string> _resendAgain = new(StringComparer.Ordinal);

    /// <summary>Asks for delivery to one agent soon. <paramref name="reconnected"/>: also resend in-flight commands (the previous socket may have lost them).</summary>
    public void Request(string agentId, bool reconnected = false) => _requests.Writer.TryWrite(new DeliveryRequest(agentId, reconnected));

    /// <summary>Asks for a pass over every agent connected here with a command due (what the poll does each interval).</summary>
    public void RequestAll() => _requests.Writer.TryWrite(new DeliveryRequest(null, false));

    private void OnQueued(string agentId) => Request(agentId);

    private void OnHandedOff(string agentId, IReadOnlyList<CommandRow> claimed) =>
        _requests.Writer.TryWrite(new DeliveryRequest(agentId, false, claimed));

    public override void Dispose()
    {
        _outbox.Queued -= OnQueued;
        _outbox.HandedOff -= OnHandedOff;
        _outbox.CanHandOff = null;
        _outbox.ReserveHandOff = null;
        _outbox.ForgetHandOff = null;
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.CommandPollInterval, _time);
        var poll = PollAsync(timer, stoppingToken);
        try
        {
            while (await _requests.Reader.WaitToReadAsync(stoppingToken))
            {
                // Coalesce bursts: one pass per agent, a reconnect request wins over a plain one.
                var batch = new Dictionary<string, bool>(StringComparer.Ordinal);
                var handedOff = new Dictionary<string, List<CommandRow>>(StringComparer.Ordinal);
                var everyone = false;
                while (_requests.Reader.TryRead(out var r))
                {
                    if (r.AgentId is null) everyone = true;
                    else if (r.Claimed is { } claimed)
                    {
                        if (!handedOff.TryGetValue(r.AgentId, out var list)) handedOff[r.AgentId] = list = [];
                        list.AddRange(claimed);
                    }
                    else batch[r.AgentId] = batch.GetValueOrDefault(r.AgentId) || r.Reconnected;
                }
                foreach (var agentId in _resendAgain) batch[agentId] = true;
                _resendAgain.Clear();
                try
                {
                    // Handed-off commands first: they were claimed before any later command of their session was written.
                    foreach (var (agentId, claimed) in handedOff)
                        await SendHandedOffAsync(agentId, claimed, stoppingToken);
                    if (everyone)
                    {
                        await ExpireAsync(stoppingToken);
                        // One query for the whole replica, not one per connected agent: with thousands of agents
                        // a per-agent poll every second was thousands of queries a second for nothing.
                        foreach (var agentId in await AgentsWithDueCommandsAsync(stoppingToken))
                            if (_registry.Find(agentId) is not null) batch.TryAdd(agentId, false);
                    }
                    await DeliverAsync(batch, stoppingToken);
                    // A poll pass always queries; a pass for one agent's hand-off may not, and proves nothing.
                    if (everyone) _outage.Succeeded();
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // Nothing is lost: the rows stay due and the next poll tries again, and a reconnect's resend is made again.
                    foreach (var (agentId, reconnected) in batch)
                        if (reconnected) _resendAgain.Add(agentId);
                    if (!_outage.Failed(ex)) _logger.LogError(HubEvents.HubLoopFailed, ex, "Command delivery pass failed");
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        await poll;
    }

    private async Task PollAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(ct)) RequestAll();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Agents that have a command due now (never sent, or its ack/result deadline passed).</summary>
    private async Task<IReadOnlyList<string>> AgentsWithDueCommandsAsync(CancellationToken ct)
    {
        await using var conn = await _db.OpenAsync(ct);
        return (await conn.QueryAsync<string>(new CommandDefinition(
            $"SELECT DISTINCT agent_id FROM agent_commands WHERE state IN ({CommandRow.OpenStatesSql}) AND next_attempt_at <= @now AND expires_at > @now",
            new { now = _time.GetUtcNow() }, cancellationToken: ct))).ToList();
    }

    /// <summary>
    /// Sends the due commands of the requested agents that are connected here: one query for all of them (after a
    /// restart thousands of agents reconnect at once, and most have nothing due), then per agent in created order.
    /// </summary>
    private async Task DeliverAsync(Dictionary<string, bool> requests, CancellationToken ct)
    {
        var connected = requests.Where(r => _registry.Find(r.Key) is not null).ToList();
        if (connected.Count == 0) return;
        var now = _time.GetUtcNow();
        List<CommandRow> due;
        await using (var conn = await _db.OpenAsync(ct))
        {
            var reconnectedIds = connected.Where(r => r.Value).Select(r => r.Key).ToArray();
            due = (await conn.QueryAsync<CommandRow>(new CommandDefinition(
                $"""
                SELECT {CommandRow.Columns}, expires_at AS ExpiresAt FROM agent_commands
                WHERE {_db.InList("agent_id", "ids")} AND state IN ({CommandRow.OpenStatesSql}) AND expires_at > @now
                  AND (next_attempt_at <= @now{(reconnectedIds.Length > 0 ? $" OR {_db.InList("agent_id", "reconnected")}" : "")})
                ORDER BY agent_id, created_at, id
                """,
                new { ids = connected.Select(r => r.Key).ToArray(), reconnected = reconnectedIds, now }, cancellationToken: ct))).ToList();
        }
        foreach (var agentCommands in due.GroupBy(c => c.AgentId, StringComparer.Ordinal))
        {
            if (_registry.Find(agentCommands.Key) is { } connection)
                await SendAsync(connection, requests[agentCommands.Key], agentCommands.ToList(), now, ct);
        }
    }

    /// <summary>
    /// Sends commands written already claimed for this agent (<see cref="CommandOutbox"/> hand-off) over the connection
    /// they were reserved on (<see cref="AgentConnection.ReserveHandOff"/>), no query and no claim. When that connection
    /// was replaced meanwhile, the new one's reconnect pass sends them (they are in-flight attempts like any other).
    /// </summary>
    private async Task SendHandedOffAsync(string agentId, List<CommandRow> claimed, CancellationToken ct)
    {
        if (_registry.Find(agentId) is not { } connection) return;
        var now = _time.GetUtcNow();
        foreach (var command in claimed)
        {
            if (!connection.TakeHandOff(command.Id)) continue;
            if (!await SendOneAsync(connection, command, now, ct)) return;
        }
    }

    /// <summary>Claims and sends one agent's due commands (in created order) over its current connection.</summary>
    private async Task SendAsync(AgentConnection connection, bool reconnected, List<CommandRow> due, DateTimeOffset now, CancellationToken ct)
    {
        // The reconnect pass re-sends what an earlier connection left in flight, due or not; a command this
        // very connection already carried (sent between its hello and this pass) keeps its own deadline.
        var firstHere = new HashSet<string>(StringComparer.Ordinal);
        var offered = due.Where(c => (connection.FirstDelivery(c.Id) && firstHere.Add(c.Id)) || !reconnected).ToList();
        if (offered.Count == 0 || connection.Lifetime.IsCancellationRequested || !_registry.IsCurrent(connection.AgentId, connection.ConnectionId)) return;
        HashSet<string> claimed;
        try
        {
            claimed = await ClaimAsync(offered, now, ct);
        }
        catch
        {
            // Not carried after all: the pass made again (_resendAgain) must find them new on this connection.
            foreach (var id in firstHere) connection.ForgetDelivery(id);
            throw;
        }
        foreach (var command in offered)
        {
            if (!claimed.Contains(command.Id))
            {
                // Finished meanwhile (its result beat this pass's read of the table) or claimed by another pass: not
                // carried by this pass, so not remembered either (a finished command would stay remembered forever).
                if (firstHere.Contains(command.Id)) connection.ForgetDelivery(command.Id);
                continue;
            }
            if (!await SendOneAsync(connection, command with { Attempts = command.Attempts + 1 }, now, ct)) return;
        }
    }

    /// <summary>Sends one claimed attempt (<paramref name="command"/>.Attempts counts it). False: the connection is gone or replaced.</summary>
    private async Task<bool> SendOneAsync(AgentConnection connection, CommandRow command, DateTimeOffset now, CancellationToken ct)
    {
        if (connection.Lifetime.IsCancellationRequested || !_registry.IsCurrent(connection.AgentId, connection.ConnectionId)) return false;
        var envelope = Envelope.Create(MessageTypes.Command, new CommandPayload
        {
            CommandId = command.Id,
            Type = command.Type,
            SessionId = command.SessionId,
            Args = ParseArgs(command.Payload),
            ExpiresAt = command.ExpiresAt,
        }, now);
        try
        {
            await connection.SendAsync(envelope, ct);
        }
        catch (Exception ex) when (ex is System.Net.WebSockets.WebSocketException or OperationCanceledException or ObjectDisposedException && !ct.IsCancellationRequested)
        {
            // The socket died under us; the claimed attempts are redelivered on reconnect or after their deadline.
            _logger.LogInformation("Could not send command {CommandId} to agent {AgentId}: {Error}", command.Id, connection.AgentId, ex.Message);
            return false;
        }
        _metrics.CommandSent(redelivery: command.Attempts > 1);
        _logger.LogDebug(HubEvents.CommandSent, "Sent command {CommandId} ({Type}) for session {SessionId} to agent {AgentId}, attempt {Attempt}",
            command.Id, command.Type, command.SessionId, connection.AgentId, command.Attempts);
        return true;
    }

    /// <summary>
    /// Claims the next attempt of each command with a compare-and-set on (state, attempts): one set-based UPDATE on
    /// PostgreSQL. Returns the ids this pass may send; another loop or replica got the rest.
    /// </summary>
    private async Task<HashSet<string>> ClaimAsync(IReadOnlyList<CommandRow> commands, DateTimeOffset now, CancellationToken ct)
    {
        // Ack timeout grows with each attempt (x1, x2, x4 ... capped) so a struggling agent is not flooded;
        // an acked command waits for its result much longer and is only re-sent so the agent re-reports it.
        DateTimeOffset Next(CommandRow c) => c.State == CommandState.Acked
            ? now + _options.CommandResultTimeout
            : now + _options.CommandAckTimeout * Math.Min(_options.CommandBackoffMaxFactor, 1 << Math.Min(c.Attempts, 20));
        static string NewState(CommandRow c) => c.State == CommandState.Pending ? CommandState.Sent : c.State;
        if (_db.IsPostgres)
        {
            // In a transaction of its own so a deadlock victim (against a batch of results updating the same rows) is run
            // again (Db.InTransactionAsync) rather than failing the pass.
            return await _db.InTransactionAsync(async (conn, tx) => (await conn.QueryAsync<string>(new CommandDefinition(
                """
                UPDATE agent_commands c SET state = v.new_state, attempts = c.attempts + 1, next_attempt_at = v.next, updated_at = @now
                FROM unnest(@ids, @states, @attempts, @newStates, @nexts) AS v(id, state, attempts, new_state, next)
                WHERE c.id = v.id AND c.state = v.state AND c.attempts = v.attempts
                RETURNING c.id
                """,
                new
                {
                    now,
                    ids = commands.Select(c => c.Id).ToArray(), states = commands.Select(c => c.State).ToArray(),
                    attempts = commands.Select(c => c.Attempts).ToArray(), newStates = commands.Select(NewState).ToArray(),
                    nexts = commands.Select(c => Next(c).ToUniversalTime()).ToArray(),
                },
                tx, cancellationToken: ct))).ToHashSet(StringComparer.Ordinal), ct);
        }
        await using var conn = await _db.OpenAsync(ct);
        var claimed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in commands)
        {
            var rows = await conn.ExecuteAsync(new CommandDefinition(
                """
                UPDATE agent_commands SET state = @newState, attempts = attempts + 1, next_attempt_at = @next, updated_at = @now
                WHERE id = @id AND state = @state AND attempts = @attempts
                """,
                new { newState = NewState(c), next = Next(c), now, id = c.Id, state = c.State, attempts = c.Attempts }, cancellationToken: ct));
            if (rows == 1) claimed.Add(c.Id);
        }
        return claimed;
    }

    private static JsonElement ParseArgs(string payload)
    {
        using var doc = JsonDocument.Parse(payload);
        return doc.RootElement.Clone();
    }

    /// <summary>
    /// Commands past their TTL become expired and their session ends truthfully: failed with a reason naming
    /// the command and agent; an expired stop still ends the session (terminated), because reconciliation
    /// stops the orphan when the agent comes back.
    /// </summary>
    internal async Task ExpireAsync(CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        IReadOnlyList<CommandRow> expired;
        await using (var conn = await _db.OpenAsync(ct))
        {
            expired = (await conn.QueryAsync<CommandRow>(new CommandDefinition(
                $"SELECT {CommandRow.Columns}, created_at AS CreatedAt, expires_at AS ExpiresAt FROM agent_commands WHERE state IN ({CommandRow.OpenStatesSql}) AND expires_at <= @now ORDER BY created_at",
                new { now }, cancellationToken: ct))).ToList();
        }
        foreach (var command in expired)
        {
            var ttl = command.Ttl ?? _options.CommandTtl;
            var applied = await _db.InTransactionAsync(async (conn, tx) =>
            {
                var changed = await conn.ExecuteAsync(new CommandDefinition(
                    "UPDATE agent_commands SET state = @expired, error = @error, updated_at = @now WHERE id = @id AND state = @state AND attempts = @attempts",
                    new
                    {
                        expired = CommandState.Expired, error = $"not completed within {ttl}", now,
                        id = command.Id, state = command.State, attempts = command.Attempts,
                    },
                    tx, cancellationToken: ct));
                if (changed == 0) return false;
                if (command.SessionId is { } sessionId)
                {
                    // Only a session placed on the command's agent: an orphan stop of an agent's copy of another agent's
                    // session must not end it there.
                    if (command.Type == CommandTypes.SessionStop)
                        await SessionStateMachine.TryTransitionAsync(conn, tx, sessionId, SessionState.Terminated,
                            $"stop command {command.Id} expired; agent {command.AgentId} will stop the session when it reconnects", now,
                            placedOn: command.AgentId, ct: ct);
                    else if (AwaitedStates(command.Type) is { } awaited)
                        // Only a session still waiting for this command fails (one adopted meanwhile by reconciliation is fine).
                        await SessionTransitions.FromAsync(conn, tx, sessionId, awaited, SessionState.Failed,
                            CommandResults.Reason($"{command.Type} command {command.Id} expired: agent {command.AgentId} did not complete it within {ttl}"),
                            now, ct);
                }
                return true;
            }, ct);
            // Final now, here or on another replica: the connection that carried it no longer needs to remember it.
            _registry.Find(command.AgentId)?.ForgetDelivery(command.Id);
            if (applied)
            {
                _metrics.CommandExpired();
                _logger.LogWarning(HubEvents.CommandExpired, "Command {CommandId} ({Type}) for session {SessionId} expired: agent {AgentId} did not complete it within {Ttl}",
                    command.Id, command.Type, command.SessionId, command.AgentId, ttl);
            }
        }
    }

    /// <summary>
    /// The session states in which a session waits for a command of this type and fails when it expires: only a start.
    /// An expired hibernate or wake leaves its session hibernating or waking. The session exists on the agent (running
    /// or hibernated, whichever the agent did), so failing it would free its quota and, at the agent's return, make
    /// reconciliation stop it as an orphan: a healthy desktop destroyed because its agent was unreachable for a while
    /// (the idle sweeper hibernates every session of an unreachable agent, nobody being able to type into them).
    /// Reconciliation settles it at the agent's next hello to what the agent reports.
    /// </summary>
    private static string[]? AwaitedStates(string type) => type switch
    {
        CommandTypes.SessionStart => [SessionState.Pending, SessionState.Starting],
        _ => null,
    };

    /// <param name="Claimed">Commands handed off by the outbox, already claimed: sent as they are.</param>
    private readonly record struct DeliveryRequest(string? AgentId, bool Reconnected, IReadOnlyList<CommandRow>? Claimed = null);
}
