namespace StreamSpace.ControlPlane.Commands;

/// <summary>The columns of an <c>agent_commands</c> row that delivery and result handling need.</summary>
public sealed record CommandRow
{
    public required string Id { get; init; }
    public required string AgentId { get; init; }
    public string? SessionId { get; init; }
    public required string Type { get; init; }
    public required string Payload { get; init; }
    public required string State { get; init; }
    public int Attempts { get; init; }

    public const string Columns =
        "id AS Id, agent_id AS AgentId, session_id AS SessionId, type AS Type, payload AS Payload, state AS State, attempts AS Attempts";

    /// <summary>SQL list of the states in which a command still waits for its agent.</summary>
    public static readonly string OpenStatesSql = $"'{CommandState.Pending}', '{CommandState.Sent}', '{CommandState.Acked}'";
}
