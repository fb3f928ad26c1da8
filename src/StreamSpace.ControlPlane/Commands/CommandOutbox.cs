using System.Data.Common;
using System.Text.Json;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Writes commands for agents into <c>agent_commands</c> in the caller's transaction (invariant 2:
/// written before it is sent). Delivery, acks, redelivery and expiry are the agent hub's work.
/// </summary>
/// <remarks>
/// Hand-off: when <see cref="ReserveHandOff"/> finds the agent connected to this replica, a command written through
/// <see cref="PgInsertMany"/> with hand-off on is written already claimed (state sent, first attempt, the usual ack
/// deadline), and <see cref="NotifyWritten"/> passes it after the commit straight to the delivery side, which sends it
/// without querying and claiming it again. Nothing is lost if that send never happens (the connection died, the
/// process crashed): the row is an in-flight attempt like any other, resent on the agent's reconnect or when its ack
/// deadline passes. The reservation is taken inside the writing transaction; one that did not commit gives its
/// reservations back (<see cref="HandOffReservations"/>).
/// </remarks>
public sealed class CommandOutbox(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options)
{
    /// <summary>Raised by <see cref="NotifyQueued"/> so the delivery side sends at once instead of on its next poll.</summary>
    public event Action<string>? Queued;

    /// <summary>Raised by <see cref="NotifyWritten"/> with one agent's commands that were written already claimed.</summary>
    public event Action<string, IReadOnlyList<CommandRow>>? HandedOff;

    /// <summary>Set by the delivery side: whether the agent has a connection here (its new commands need no NOTIFY).</summary>
    public Func<string, bool>? CanHandOff { get; set; }

    /// <summary>
    /// Set by the delivery side: reserves a command id on the agent's connection here for hand-off (agent id, command id),
    /// false when it has none. The reservation is taken before the row is written, so no delivery pass can claim the
    /// committed row a second time before the hand-off sends it.
    /// </summary>
    public Func<string, string, bool>? ReserveHandOff { get; set; }

    /// <summary>Set by the delivery side: gives back a reservation whose row was never committed (agent id, command id).</summary>
    public Action<string, string>? ForgetHandOff { get; set; }

    /// <summary>The hand-off reservations of one writing transaction, to pass to <see cref="WriteManyAsync"/> or <see cref="PgInsertMany"/>.</summary>
    public HandOffReservations NewHandOff() => new(this);

    /// <param name="ttl">Overrides the configured command TTL, for commands that are useless after a short while (stream.open).</param>
    public async Task<string> EnqueueAsync(
        DbConnection conn, DbTransaction tx, string agentId, string? sessionId, string type, object args, CancellationToken ct, TimeSpan? ttl = null) =>
        (await WriteManyAsync(conn, tx, [new NewCommand(agentId, sessionId, type, args)], ct, ttl)).Rows[0].Id;

    /// <summary>
    /// Writes several commands (one per item, each for its agent and session): one set-based INSERT on PostgreSQL.
    /// With <paramref name="handOff"/>, commands for agents connected here are written already claimed (see the remarks
    /// on the class) and their reservations recorded there. Pass the result to <see cref="NotifyWritten"/> once the
    /// transaction committed; if it did not, <see cref="HandOffReservations.Release"/>.
    /// </summary>
    public async Task<WrittenCommands> WriteManyAsync(
        DbConnection conn, DbTransaction tx, IReadOnlyList<NewCommand> commands, CancellationToken ct, TimeSpan? ttl = null, HandOffReservations? handOff = null)
    {
        if (commands.Count == 0) return new WrittenCommands([]);
        if (db.IsPostgres)
        {
            var (sql, args, written) = PgInsertMany(commands, ttl, handOff);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            return written;
        }
        var now = time.GetUtcNow();
        var rows = Rows(commands, handOff, now + (ttl ?? options.Value.CommandTtl));
        foreach (var row in rows)
        {
            var (sql, args, _) = SqliteInsertOne(row, now);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
        }
        return new WrittenCommands(rows);
    }

    /// <summary>
    /// The PostgreSQL statement of <see cref="WriteManyAsync"/>, with parameter names (c_*) of its own so a caller can
    /// send it together with other statements in one round trip. Returns the command ids in item order.
    /// </summary>
    internal (string Sql, object Args, WrittenCommands Written) PgInsertMany(IReadOnlyList<NewCommand> commands, TimeSpan? ttl = null, HandOffReservations? handOff = null)
    {
        var now = time.GetUtcNow();
        var expires = now + (ttl ?? options.Value.CommandTtl);
        var rows = Rows(commands, handOff, expires);
        // Agents whose new commands wait in the table and whose socket is not on this replica: the replica that holds
        // it is woken at commit (DatabaseNotificationListener). Local agents are woken in process (NotifyWritten).
        var remote = rows.Where(r => r.Attempts == 0 && CanHandOff?.Invoke(r.AgentId) != true)
            .Select(r => r.AgentId).Distinct(StringComparer.Ordinal).ToArray();
        var notify = remote.Length == 0 ? "" : $";\nSELECT pg_notify('{DatabaseNotificationListener.CommandsChannel}', a) FROM unnest(@c_notify) AS a";
        return ($"""
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
            SELECT v.id, v.agent_id, v.session_id, v.type, v.payload, v.state, v.attempts, v.next, @c_expires, @c_now, @c_now
            FROM unnest(@c_ids, @c_agents, @c_sessions, @c_types, @c_payloads, @c_states, @c_attempts, @c_nexts)
                WITH ORDINALITY AS v(id, agent_id, session_id, type, payload, state, attempts, next, n)
            ORDER BY v.n{notify}
            """,
            new
            {
                c_notify = remote,
                c_ids = rows.Select(r => r.Id).ToArray(), c_agents = rows.Select(r => r.AgentId).ToArray(),
                c_sessions = rows.Select(r => r.SessionId).ToArray(), c_types = rows.Select(r => r.Type).ToArray(),
                c_payloads = rows.Select(r => r.Payload).ToArray(), c_states = rows.Select(r => r.State).ToArray(),
                c_attempts = rows.Select(r => r.Attempts).ToArray(), c_nexts = rows.Select(r => NextAttempt(r, now).ToUniversalTime()).ToArray(),
                c_now = now, c_expires = expires,
            },
            new WrittenCommands(rows));
    }

    private (string Sql, object Args, string Id) SqliteInsertOne(CommandRow row, DateTimeOffset now)
    {
        return ("""
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
            VALUES (@id, @agentId, @sessionId, @type, @payload, @state, @attempts, @next, @expires, @now, @now)
            """,
            new
            {
                id = row.Id, agentId = row.AgentId, sessionId = row.SessionId, type = row.Type, payload = row.Payload, state = row.State,
                attempts = row.Attempts, next = NextAttempt(row, now), now, expires = row.ExpiresAt,
            },
            row.Id);
    }

    /// <summary>The rows to write: pending, or (hand-off) already claimed for a connection of the agent on this replica.</summary>
    private List<CommandRow> Rows(IReadOnlyList<NewCommand> commands, HandOffReservations? handOff, DateTimeOffset expiresAt)
    {
        var reserve = handOff is null ? null : ReserveHandOff;
        return commands.Select(c =>
        {
            var id = NewId();
            var claimed = reserve?.Invoke(c.AgentId, id) == true;
            if (claimed) handOff!.Add(c.AgentId, id);
            return new CommandRow
            {
                Id = id, AgentId = c.AgentId, SessionId = c.SessionId, Type = c.Type, Payload = Payload(c.Args),
                State = claimed ? CommandState.Sent : CommandState.Pending, Attempts = claimed ? 1 : 0, ExpiresAt = expiresAt,
            };
        }).ToList();
    }

    /// <summary>Due now when pending; a claimed first attempt waits for its ack like any sent one.</summary>
    private DateTimeOffset NextAttempt(CommandRow row, DateTimeOffset now) => row.Attempts == 0 ? now : now + options.Value.CommandAckTimeout;

    private static string NewId() => Guid.NewGuid().ToString("N");

    private static string Payload(object args) => JsonSerializer.Serialize(args, ProtocolJson.Options);

    /// <summary>Call after the enqueuing transaction committed: the agent has new work.</summary>
    public void NotifyQueued(string agentId) => Queued?.Invoke(agentId);

    /// <summary>Call after the transaction that wrote <paramref name="written"/> committed: hands off the claimed commands, and asks for delivery of the rest.</summary>
    public void NotifyWritten(WrittenCommands written)
    {
        foreach (var agent in written.Rows.GroupBy(r => r.AgentId, StringComparer.Ordinal))
        {
            var claimed = agent.Where(r => r.Attempts > 0).ToList();
            if (claimed.Count > 0) HandedOff?.Invoke(agent.Key, claimed);
            if (claimed.Count < agent.Count()) NotifyQueued(agent.Key);
        }
    }
}

/// <summary>
/// The hand-off reservations (<see cref="CommandOutbox.ReserveHandOff"/>) that the attempts of one writing transaction took.
/// An attempt that does not commit (run again after a PostgreSQL deadlock, a create batch drawn again after a session-id
/// collision, a batch that failed) gives them back with <see cref="Release"/>: its command ids are never written, so no
/// hand-off takes them and no result forgets them, and the connection kept them for as long as it lived.
/// </summary>
public sealed class HandOffReservations
{
    private readonly CommandOutbox _outbox;
    private readonly List<(string AgentId, string CommandId)> _taken = [];

    internal HandOffReservations(CommandOutbox outbox) => _outbox = outbox;

    internal void Add(string agentId, string commandId) => _taken.Add((agentId, commandId));

    /// <summary>Forgets every reservation taken so far: call when an attempt did not commit, before the next one.</summary>
    public void Release()
    {
        foreach (var (agentId, commandId) in _taken) _outbox.ForgetHandOff?.Invoke(agentId, commandId);
        _taken.Clear();
    }
}

/// <summary>Commands as <see cref="CommandOutbox.WriteManyAsync"/> wrote them, in item order.</summary>
public sealed record WrittenCommands(IReadOnlyList<CommandRow> Rows);

/// <summary>One command for <see cref="CommandOutbox.WriteManyAsync"/>.</summary>
public sealed record NewCommand(string AgentId, string? SessionId, string Type, object Args);
