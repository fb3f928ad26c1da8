namespace StreamSpace.ControlPlane.Sessions;

/// <summary>A row of <c>sessions</c>.</summary>
public sealed record SessionRecord
{
    public required string Id { get; init; }
    public required string UserId { get; init; }
    public required string Username { get; init; }
    public required string Template { get; init; }
    public required string State { get; init; }
    public string? StateReason { get; init; }
    public string? AgentId { get; init; }
    public required string Cpu { get; init; }
    public required string Memory { get; init; }
    public bool PersistentHome { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    public DateTimeOffset? LastActivityAt { get; init; }

    public const string Columns =
        "id AS Id, user_id AS UserId, username AS Username, template AS Template, state AS State, state_reason AS StateReason, " +
        "agent_id AS AgentId, cpu AS Cpu, memory AS Memory, persistent_home AS PersistentHome, created_at AS CreatedAt, " +
        "updated_at AS UpdatedAt, last_activity_at AS LastActivityAt";

    public SessionView ToView() => new(Id, Id, Username, Template, State, AgentId, new SessionResourcesView(Cpu, Memory),
        PersistentHome, CreatedAt, UpdatedAt, StateReason, LastActivityAt);
}

/// <summary>A session as the API shows it (design §4); <c>id == name</c>.</summary>
public sealed record SessionView(
    string Id, string Name, string User, string Template, string State, string? AgentId, SessionResourcesView Resources,
    bool PersistentHome, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? StateReason, DateTimeOffset? LastActivityAt);

public sealed record SessionResourcesView(string Cpu, string Memory);
