namespace StreamSpace.ControlPlane.Web;

/// <summary>Settings of the web UI (<c>StreamSpace:Web:*</c>), validated on start.</summary>
public sealed class WebUiOptions
{
    public const string Section = "StreamSpace:Web";

    /// <summary>How often live pages (sessions, agents) refresh from the API. Two seconds feels live without load.</summary>
    public TimeSpan LiveRefreshInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How often the launch progress checks the new session while it starts.</summary>
    public TimeSpan LaunchProgressInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long launch progress waits for a session to run before it says so and stops waiting.</summary>
    public TimeSpan LaunchTimeout { get; set; } = TimeSpan.FromMinutes(3);

    /// <summary>Audit entries shown per page.</summary>
    public int AuditPageSize { get; set; } = 200;

    public string? Validate()
    {
        if (LiveRefreshInterval < TimeSpan.FromMilliseconds(100)) return "LiveRefreshInterval must be at least 100 ms";
        if (LaunchProgressInterval < TimeSpan.FromMilliseconds(100)) return "LaunchProgressInterval must be at least 100 ms";
        if (LaunchTimeout <= LaunchProgressInterval) return "LaunchTimeout must be longer than LaunchProgressInterval";
        if (AuditPageSize is < 1 or > 10_000) return "AuditPageSize must be between 1 and 10000";
        return null;
    }
}
