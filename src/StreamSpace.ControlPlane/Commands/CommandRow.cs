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
    /// <summary>Read only where asked for (not in <see cref="Columns"/>): the expiry pass, to quote the command's own TTL.</summary>
    public DateTimeOffset? CreatedAt { get; init; }
    /// <summary>Read only where asked for: by delivery, which tells the agent (the agent does not start an expired command), and the expiry pass.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>Read only where asked for: the agent the command's session is placed on (null: no session, or not placed).</summary>
    public string? SessionAgentId { get; init; }

    /// <summary>The TTL this command was written with (they differ by type: stream.open's is short), or null when not read.</summary>
    public TimeSpan? Ttl => CreatedAt is { } created && ExpiresAt is { } expires ? expires - created : null;

    public const string Columns =
        "id AS Id, agent_id AS AgentId, session_id AS SessionId, type AS Type, payload AS Payload, state AS State, attempts AS Attempts";

    /// <summary>SQL list of the states in which a command still waits for its agent.</summary>
    public static readonly string OpenStatesSql = $"'{CommandState.Pending}', '{CommandState.Sent}', '{CommandState.Acked}'";

    /// <summary>SQL list of the final states (<see cref="CommandState.IsFinal"/>).</summary>
    public static readonly string FinishedStatesSql = $"'{CommandState.Succeeded}', '{CommandState.Failed}', '{CommandState.Expired}'";
}
