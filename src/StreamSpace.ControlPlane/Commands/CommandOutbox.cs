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
        DbConnection conn, DbTransaction tx, string agentId, string? sessionId, string type, object args, CancellationToken ct, TimeSpan? ttl = null)
    {
        var id = Guid.NewGuid().ToString("N");
        var now = time.GetUtcNow();
        var payload = JsonSerializer.Serialize(args, ProtocolJson.Options);
        await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
            VALUES (@id, @agentId, @sessionId, @type, @payload, @state, 0, @now, @expires, @now, @now)
            """,
            new { id, agentId, sessionId, type, payload, state = CommandState.Pending, now, expires = now + (ttl ?? options.Value.CommandTtl) },
            tx, cancellationToken: ct));
        return id;
    }

    /// <summary>
    /// Writes several commands (one per item, each for its agent and session) with the configured TTL: one
    /// set-based INSERT on PostgreSQL. Returns the command ids in item order.
    /// </summary>
    public async Task<IReadOnlyList<string>> EnqueueManyAsync(DbConnection conn, DbTransaction tx, IReadOnlyList<NewCommand> commands, CancellationToken ct)
    {
        var ids = commands.Select(_ => Guid.NewGuid().ToString("N")).ToArray();
        if (commands.Count == 0) return ids;
        var now = time.GetUtcNow();
        var expires = now + options.Value.CommandTtl;
        var payloads = commands.Select(c => JsonSerializer.Serialize(c.Args, ProtocolJson.Options)).ToArray();
        if (db.IsPostgres)
        {
            var (sql, args) = PgInsertMany(ids, commands, payloads, now, expires);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            return ids;
        }
        for (var i = 0; i < commands.Count; i++)
        {
            var c = commands[i];
            await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
                VALUES (@id, @agentId, @sessionId, @type, @payload, @state, 0, @now, @expires, @now, @now)
                """,
                new { id = ids[i], agentId = c.AgentId, sessionId = c.SessionId, type = c.Type, payload = payloads[i], state = CommandState.Pending, now, expires },
                tx, cancellationToken: ct));
        }
        return ids;
    }

    /// <summary>
    /// The PostgreSQL statement of <see cref="EnqueueManyAsync"/>, with parameter names (c_*) of its own so a caller can
    /// send it together with other statements in one round trip. Returns the command ids in item order.
    /// </summary>
    internal (string Sql, object Args, IReadOnlyList<string> Ids) PgInsertMany(IReadOnlyList<NewCommand> commands)
    {
        var ids = commands.Select(_ => Guid.NewGuid().ToString("N")).ToArray();
        var now = time.GetUtcNow();
        var (sql, args) = PgInsertMany(ids, commands, commands.Select(c => JsonSerializer.Serialize(c.Args, ProtocolJson.Options)).ToArray(), now, now + options.Value.CommandTtl);
        return (sql, args, ids);
    }

    private static (string Sql, object Args) PgInsertMany(string[] ids, IReadOnlyList<NewCommand> commands, string[] payloads, DateTimeOffset now, DateTimeOffset expires) =>
        ("""
         INSERT INTO agent_commands (id, agent_id, session_id, type, payload, state, attempts, next_attempt_at, expires_at, created_at, updated_at)
         SELECT v.id, v.agent_id, v.session_id, v.type, v.payload, @c_state, 0, @c_now, @c_expires, @c_now, @c_now
         FROM unnest(@c_ids, @c_agents, @c_sessions, @c_types, @c_payloads) WITH ORDINALITY AS v(id, agent_id, session_id, type, payload, n)
         ORDER BY v.n
         """,
         new
         {
             c_ids = ids, c_agents = commands.Select(c => c.AgentId).ToArray(), c_sessions = commands.Select(c => c.SessionId).ToArray(),
             c_types = commands.Select(c => c.Type).ToArray(), c_payloads = payloads, c_state = CommandState.Pending, c_now = now, c_expires = expires,
         });

    /// <summary>Call after the enqueuing transaction committed: the agent has new work.</summary>
    public void NotifyQueued(string agentId) => Queued?.Invoke(agentId);
}

/// <summary>One command for <see cref="CommandOutbox.EnqueueManyAsync"/>.</summary>
public sealed record NewCommand(string AgentId, string? SessionId, string Type, object Args);
