namespace StreamSpace.ControlPlane.Identity;

/// <summary>A row of <c>users</c>.</summary>
public sealed record UserRecord
{
    public required string Id { get; init; }
    public required string Username { get; init; }
    public required string PasswordHash { get; init; }
    public required string Role { get; init; }
    public bool Disabled { get; init; }
    public int MaxSessions { get; init; }
    public int TokenVersion { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }

    public const string Columns =
        "id AS Id, username AS Username, password_hash AS PasswordHash, role AS Role, disabled AS Disabled, " +
        "max_sessions AS MaxSessions, token_version AS TokenVersion, created_at AS CreatedAt, updated_at AS UpdatedAt";

    public UserDto ToDto() => new(Id, Username, Role, Disabled, MaxSessions, CreatedAt);
}

/// <summary>A user as the API shows it.</summary>
public sealed record UserDto(string Id, string Username, string Role, bool Disabled, int MaxSessions, DateTimeOffset CreatedAt);
