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

    public static Task<StreamSession?> FindAsync(DbConnection conn, string id, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<StreamSession>(new CommandDefinition(
            "SELECT id AS Id, user_id AS UserId, username AS Username, state AS State, agent_id AS AgentId FROM sessions WHERE id = @id",
            new { id }, cancellationToken: ct));
}
