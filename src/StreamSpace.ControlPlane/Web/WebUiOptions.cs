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

    /// <summary>Audit entries shown per page: the newest ones, read in one API call, so at most its largest limit.</summary>
    public int AuditPageSize { get; set; } = 200;

    /// <summary>Longest <see cref="LaunchTimeout"/>: a launch nobody watches longer than a day is not waited for.</summary>
    public static readonly TimeSpan MaxLaunchTimeout = TimeSpan.FromDays(1);

    /// <summary>The first thing wrong with these settings, naming the setting, or null when they are usable.</summary>
    public string? Validate()
    {
        const string prefix = "StreamSpace__Web__";
        var maxTimer = Hosting.StreamSpaceOptions.MaxTimerPeriod;
        if (LiveRefreshInterval < TimeSpan.FromMilliseconds(100) || LiveRefreshInterval > maxTimer)
            return $"{prefix}LiveRefreshInterval must be between 00:00:00.1 and {maxTimer:c}";
        if (LaunchProgressInterval < TimeSpan.FromMilliseconds(100) || LaunchProgressInterval > maxTimer)
            return $"{prefix}LaunchProgressInterval must be between 00:00:00.1 and {maxTimer:c}";
        if (LaunchTimeout <= LaunchProgressInterval) return $"{prefix}LaunchTimeout must be longer than {prefix}LaunchProgressInterval";
        if (LaunchTimeout > MaxLaunchTimeout) return $"{prefix}LaunchTimeout must be at most {MaxLaunchTimeout:c}";
        if (AuditPageSize is < 1 or > Audit.AuditApi.MaxLimit) return $"{prefix}AuditPageSize must be between 1 and {Audit.AuditApi.MaxLimit}";
        return null;
    }

    /// <summary>Binds and checks the section, throwing <see cref="Hosting.StreamSpaceConfigurationException"/> for a bad value.</summary>
    public static WebUiOptions FromConfiguration(IConfiguration config)
    {
        var o = new WebUiOptions();
        Hosting.StreamSpaceConfigurationException.Binding(() => config.GetSection(Section).Bind(o));
        Hosting.StreamSpaceConfigurationException.ThrowIfAny(Agent.Hosting.SettingNames.Unknown(config.GetSection(Section), typeof(WebUiOptions)));
        Hosting.StreamSpaceConfigurationException.ThrowIfAny(o.Validate() is { } error ? [error] : []);
        return o;
    }
}
