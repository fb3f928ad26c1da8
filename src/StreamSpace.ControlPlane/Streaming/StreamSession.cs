using System.Data.Common;
using Dapper;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>What streaming needs of a session row, read with plain SQL from <c>sessions</c>.</summary>
internal sealed record StreamSession
{
    public required string Id { get; init; }
    public required string UserId { get; init; }
    /// <summary>The owner's username.</summary>
    public required string Username { get; init; }
    public required string State { get; init; }
    public string? AgentId { get; init; }
    /// <summary><c>agents.status</c> of the session's agent (the one liveness fact, invariant 1); null when there is no such agent.</summary>
    public string? AgentStatus { get; init; }

    public static Task<StreamSession?> FindAsync(DbConnection conn, string id, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<StreamSession>(new CommandDefinition(
            """
            SELECT s.id AS Id, s.user_id AS UserId, s.username AS Username, s.state AS State, s.agent_id AS AgentId, a.status AS AgentStatus
            FROM sessions s LEFT JOIN agents a ON a.agent_id = s.agent_id WHERE s.id = @id
            """,
            new { id }, cancellationToken: ct));
}
