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
public sealed class CommandOutbox(Db db, TimeProvider time, IOptions<StreamSpaceOptions> options)
{
    /// <summary>Raised by <see cref="NotifyQueued"/> so the delivery side sends at once instead of on its next poll.</summary>
    public event Action<string>? Queued;

    /// <param name="ttl">Overrides the configured command TTL, for commands that are useless after a short while (stream.open).</param>
    public async Task<string> EnqueueAsync(
        DbConnection conn, DbTransaction tx, string agentId, string? sessionId, string type, object args, CancellationToken ct, TimeSpan? ttl = null) =>
        (await EnqueueManyAsync(conn, tx, [new NewCommand(agentId, sessionId, type, args)], ct, ttl))[0];

    /// <summary>
    /// Writes several commands (one per item, each for its agent and session): one set-based INSERT on PostgreSQL.
    /// Returns the command ids in item order.
    /// </summary>
    public async Task<IReadOnlyList<string>> EnqueueManyAsync(
        DbConnection conn, DbTransaction tx, IReadOnlyList<NewCommand> commands, CancellationToken ct, TimeSpan? ttl = null)
    {
        if (commands.Count == 0) return [];
        if (db.IsPostgres)
        {
            var (sql, args, ids) = PgInsertMany(commands, ttl);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            return ids;
        }
        var written = new List<string>(commands.Count);
        foreach (var command in commands)
        {
            var (sql, args, id) = SqliteInsertOne(command, ttl);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            written.Add(id);
        }
        return written;
    }

    /// <summary>
    /// The PostgreSQL statement of <see cref="EnqueueManyAsync"/>, with parameter names (c_*) of its own so a caller can
    /// send it together with other statements in one round trip. Returns the command ids in item order.
    /// </summary>
    internal (string Sql, object Args, IReadOnlyList<string> Ids) PgInsertMany(IReadOnlyList<NewCommand> commands, TimeSpan? ttl = null)
    {
        var ids = commands.Select(_ => NewId()).ToArray();
        var now = time.GetUtcNow();
        return ("""
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
            SELECT v.id, v.agent_id, v.session_id, v.type, v.payload, @c_state, 0, @c_now, @c_expires, @c_now, @c_now
            FROM unnest(@c_ids, @c_agents, @c_sessions, @c_types, @c_payloads) WITH ORDINALITY AS v(id, agent_id, session_id, type, payload, n)
            ORDER BY v.n
            """,
            new
            {
                c_ids = ids, c_agents = commands.Select(c => c.AgentId).ToArray(), c_sessions = commands.Select(c => c.SessionId).ToArray(),
                c_types = commands.Select(c => c.Type).ToArray(), c_payloads = commands.Select(c => Payload(c.Args)).ToArray(),
                c_state = CommandState.Pending, c_now = now, c_expires = now + (ttl ?? options.Value.CommandTtl),
            },
            ids);
    }

    private (string Sql, object Args, string Id) SqliteInsertOne(NewCommand c, TimeSpan? ttl)
    {
        var id = NewId();
        var now = time.GetUtcNow();
        return ("""
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
            VALUES (@id, @agentId, @sessionId, @type, @payload, @state, 0, @now, @expires, @now, @now)
            """,
            new
            {
                id, agentId = c.AgentId, sessionId = c.SessionId, type = c.Type, payload = Payload(c.Args), state = CommandState.Pending,
                now, expires = now + (ttl ?? options.Value.CommandTtl),
            },
            id);
    }

    private static string NewId() => Guid.NewGuid().ToString("N");

    private static string Payload(object args) => JsonSerializer.Serialize(args, ProtocolJson.Options);

    /// <summary>Call after the enqueuing transaction committed: the agent has new work.</summary>
    public void NotifyQueued(string agentId) => Queued?.Invoke(agentId);
}

/// <summary>One command for <see cref="CommandOutbox.EnqueueManyAsync"/>.</summary>
public sealed record NewCommand(string AgentId, string? SessionId, string Type, object Args);
