using System.Data.Common;
using System.Text.Json;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Writes commands for agents into <c>agent_commands</c> in the caller's transaction (invariant 2:
/// written before it is sent). Delivery, acks, redelivery and expiry are the agent hub's work.
/// </summary>
public sealed class CommandOutbox(TimeProvider time, IOptions<StreamSpaceOptions> options)
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

    /// <summary>Call after the enqueuing transaction committed: the agent has new work.</summary>
    public void NotifyQueued(string agentId) => Queued?.Invoke(agentId);
}
