namespace StreamSpace.ControlPlane.Identity;

public static class Roles
{
    public const string Admin = "admin";
    public const string User = "user";
    public static bool IsValid(string? role) => role is Admin or User;
}

/// <summary>Authorization policies; every endpoint names one (or is explicitly anonymous).</summary>
public static class Policies
{
    /// <summary>Any signed-in, enabled user.</summary>
    public const string User = "user";
    public const string Admin = "admin";
    /// <summary>A worker agent on its control channel, authenticated by its agent token (scheme "AgentToken").</summary>
    public const string Agent = "agent";
}
