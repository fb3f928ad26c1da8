using Microsoft.Extensions.Configuration;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// Every setting of an agent (contract §9/§10). Read from <c>STREAMSPACE_*</c> environment variables or the
/// <c>StreamSpace:Agent:*</c> configuration section; validated once at start so a bad value stops the agent
/// with a clear message instead of failing later.
/// </summary>
public sealed partial class AgentOptions
{
    public const string ConfigurationSection = "StreamSpace:Agent";

    /// <summary>Control plane base URL (http:// or https://); the WebSocket URL is derived from it.</summary>
    public string ControlPlaneUrl { get; set; } = "";
    public string AgentId { get; set; } = "";
    public string Token { get; set; } = "";
    /// <summary>Folder for session records, homes and the command dedupe store; survives agent restarts.</summary>
    public string StateFolder { get; set; } = "";
    /// <summary>One of <see cref="Platforms.All"/>.</summary>
    public string Runtime { get; set; } = Platforms.Process;
    /// <summary>Used until the control plane's welcome says otherwise.</summary>
    public int HeartbeatSeconds { get; set; } = 10;
    public int MaxSessions { get; set; } = 10;
    public string Region { get; set; } = "default";

    /// <summary>First reconnect delay cap (contract §8: 0.5 s).</summary>
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Largest reconnect delay cap (contract §8: 30 s).</summary>
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>How long the TCP/TLS/upgrade plus the hello/welcome exchange may take.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>WebSocket ping interval underneath the protocol heartbeat; detects dead TCP.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);
    /// <summary>
    /// How long a keep-alive ping may stay unanswered before the control connection is aborted and redialled. Without it a
    /// control plane that vanished without FIN or RST (its node died, a NAT dropped the flow) holds the reader for the
    /// kernel's retransmission timeout (~15 min), long after the control plane marked the agent offline
    /// (3 missed heartbeats, 30 s by default).
    /// </summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>How long finished command results are kept for redelivery (contract §5: at least 24 h).</summary>
    public TimeSpan CommandRetention { get; set; } = CommandRecords.MinRetention;

    /// <summary>
    /// When the agent runs as root: the unprivileged account sessions run as, or with <see cref="SessionUserPerOwner"/>
    /// the prefix of one account per StreamSpace user (<c>streamspace-&lt;hash&gt;</c>), created on first use.
    /// </summary>
    public string SessionUser { get; set; } = "streamspace";
    /// <summary>One Unix account per StreamSpace user (true), or every session as <see cref="SessionUser"/> (false).</summary>
    public bool SessionUserPerOwner { get; set; } = true;
    /// <summary>
    /// Enforce each session's template cpu and memory with a cgroup per session (process runtime, agent as root,
    /// cgroup v1 hierarchies). When the host cannot, the agent says why at start and sessions run without limits.
    /// </summary>
    public bool SessionLimits { get; set; } = true;
    /// <summary>
    /// With <see cref="SessionLimits"/>: most processes and threads one session may have (cgroup <c>pids.max</c>), so a
    /// fork bomb stays inside its session. Firefox with several content processes uses a few hundred.
    /// </summary>
    public int SessionMaxProcesses { get; set; } = 4096;
    /// <summary>
    /// Window manager started in every session before its app, so the app fills the session's desktop and follows it
    /// when the viewer resizes it: null (the default) for <see cref="DefaultWindowManager"/> when it is installed, "none"
    /// for no window manager (apps keep the size they choose), or another command line.
    /// </summary>
    public string? SessionWindowManager { get; set; }
    /// <summary>matchbox's single-window mode: each app's window fills the screen, dialogs stay dialogs.</summary>
    public const string DefaultWindowManager = "matchbox-window-manager -use_titlebar no -use_cursor no";
    /// <summary>
    /// Where the state goes when STREAMSPACE_AGENT_STATE is not set and, as root, the session accounts could not reach the
    /// default <c>./data/agent-&lt;id&gt;</c> (<see cref="StateFolderChoice"/>).
    /// </summary>
    public string SharedStateRoot { get; set; } = StateFolderChoice.DefaultSharedRoot;
    /// <summary>Where the cgroup hierarchies are mounted.</summary>
    public string CgroupRoot { get; set; } = "/sys/fs/cgroup";
    /// <summary>Xvnc executable (PATH lookup when not absolute).</summary>
    public string XvncPath { get; set; } = "Xvnc";
    public string Geometry { get; set; } = "1280x800";
    /// <summary>First X display number tried; lower numbers are left to a desktop the machine may have.</summary>
    public int FirstDisplay { get; set; } = 20;
    /// <summary>How many display numbers from <see cref="FirstDisplay"/> on the agent tries before a start fails for want of one.</summary>
    public int DisplayCount { get; set; } = 1000;
    /// <summary>How long Xvnc may take to accept RFB connections and the app to launch.</summary>
    public TimeSpan SessionStartTimeout { get; set; } = TimeSpan.FromSeconds(20);
    /// <summary>Time between SIGTERM and SIGKILL when a session is stopped.</summary>
    public TimeSpan StopGracePeriod { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>How often the process monitor looks for exited or crashed sessions.</summary>
    public TimeSpan MonitorInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>
    /// Size beyond which the monitor empties a session's <c>session.log</c> (the app's output). It lies in the state folder,
    /// which also holds homes and command records: a chatty app running for weeks would fill the disk, and the agent could
    /// then record no start, hibernate or wake. The app keeps writing to it (it appends), from the start again.
    /// </summary>
    public long SessionLogMaxBytes { get; set; } = DefaultSessionLogMaxBytes;
    public const long DefaultSessionLogMaxBytes = 8L * 1024 * 1024;
    /// <summary>Smallest <see cref="SessionLogMaxBytes"/>: a crash reason quotes the log's last lines, read from its last 64 KiB.</summary>
    public const long MinSessionLogMaxBytes = 64 * 1024;

    /// <summary>Reads the options from <c>STREAMSPACE_*</c> variables, falling back to the <c>StreamSpace:Agent</c> section.</summary>
    public static AgentOptions FromConfiguration(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(ConfigurationSection);
        var options = new AgentOptions();
        try
        {
            section.Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            // A value of the section that is not of its type ("SessionMaxProcesses=abc"): one line and exit code 2, not a
            // stack trace, as for every other setting.
            throw new AgentOptionsException("invalid agent configuration: " + SettingNames.ConversionFailure(ex.Message), ex);
        }
        if (SettingNames.Unknown(section, typeof(AgentOptions)) is { Count: > 0 } unknown)
            throw new AgentOptionsException("invalid agent configuration: " + string.Join("; ", unknown));

        string? Flat(string key) => configuration[key] is { Length: > 0 } value ? value : null;
        options.ControlPlaneUrl = Flat("STREAMSPACE_CONTROL_PLANE") ?? options.ControlPlaneUrl;
        options.AgentId = Flat("STREAMSPACE_AGENT_ID") ?? options.AgentId;
        options.Token = Flat("STREAMSPACE_AGENT_TOKEN") ?? options.Token;
        options.StateFolder = ConfiguredStateFolder(configuration) ?? "";
        options.Runtime = Flat("STREAMSPACE_RUNTIME") ?? options.Runtime;
        options.Region = Flat("STREAMSPACE_REGION") ?? options.Region;
        options.HeartbeatSeconds = ParseInt("STREAMSPACE_HEARTBEAT_SECONDS", Flat("STREAMSPACE_HEARTBEAT_SECONDS")) ?? options.HeartbeatSeconds;
        options.MaxSessions = ParseInt("STREAMSPACE_MAX_SESSIONS", Flat("STREAMSPACE_MAX_SESSIONS")) ?? options.MaxSessions;
        options.SessionUser = Flat("STREAMSPACE_SESSION_USER") ?? options.SessionUser;
        if (Flat("STREAMSPACE_SESSION_USER_PER_OWNER") is { } perOwner)
            options.SessionUserPerOwner = bool.TryParse(perOwner, out var on) ? on
                : throw new AgentOptionsException($"STREAMSPACE_SESSION_USER_PER_OWNER must be true or false, got '{perOwner}'");
        if (Flat("STREAMSPACE_SESSION_LIMITS") is { } limits)
            options.SessionLimits = bool.TryParse(limits, out var enforce) ? enforce
                : throw new AgentOptionsException($"STREAMSPACE_SESSION_LIMITS must be true or false, got '{limits}'");
        options.SessionMaxProcesses = ParseInt("STREAMSPACE_SESSION_MAX_PROCESSES", Flat("STREAMSPACE_SESSION_MAX_PROCESSES")) ?? options.SessionMaxProcesses;
        options.SessionWindowManager = Flat("STREAMSPACE_SESSION_WINDOW_MANAGER") ?? options.SessionWindowManager;
        if (string.IsNullOrWhiteSpace(options.StateFolder) && !string.IsNullOrWhiteSpace(options.AgentId))
        {
            options.StateFolder = Path.Combine("data", $"agent-{options.AgentId}");
        }
        return options;
    }

    /// <summary>The state folder the operator set (<c>STREAMSPACE_AGENT_STATE</c> or <c>StreamSpace:Agent:StateFolder</c>), or null.</summary>
    public static string? ConfiguredStateFolder(IConfiguration configuration) =>
        configuration["STREAMSPACE_AGENT_STATE"] is { Length: > 0 } flat ? flat
        : configuration.GetSection(ConfigurationSection)["StateFolder"] is { Length: > 0 } sectioned ? sectioned
        : null;

    private static int? ParseInt(string name, string? value) =>
        value is null ? null
        : int.TryParse(value, out var parsed) ? parsed
        : throw new AgentOptionsException($"{name} must be a whole number, got '{value}'");

    /// <summary>Throws <see cref="AgentOptionsException"/> naming every problem at once.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        if (!Uri.TryCreate(ControlPlaneUrl, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            problems.Add($"STREAMSPACE_CONTROL_PLANE must be an http:// or https:// URL, got '{ControlPlaneUrl}'");
        }
        if (string.IsNullOrWhiteSpace(AgentId) || AgentId.Length > 128 || AgentId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            problems.Add("STREAMSPACE_AGENT_ID must be 1-128 characters of letters, digits, '-', '_' or '.'");
        }
        if (string.IsNullOrWhiteSpace(Token))
        {
            problems.Add("STREAMSPACE_AGENT_TOKEN is required");
        }
        if (string.IsNullOrWhiteSpace(StateFolder))
        {
            problems.Add("STREAMSPACE_AGENT_STATE is required");
        }
        if (Runtime is Platforms.Docker or Platforms.Kubernetes)
        {
            problems.Add($"STREAMSPACE_RUNTIME={Runtime} is not built yet; use '{Platforms.Process}'");
        }
        else if (Runtime is not (Platforms.Process or Platforms.Simulated))
        {
            problems.Add($"STREAMSPACE_RUNTIME must be one of {string.Join(", ", Platforms.All)}, got '{Runtime}'");
        }
        if (HeartbeatSeconds is < 1 or > 3600) problems.Add("STREAMSPACE_HEARTBEAT_SECONDS must be between 1 and 3600");
        if (MaxSessions is < 0 or > 10_000) problems.Add("STREAMSPACE_MAX_SESSIONS must be between 0 and 10000");
        if (string.IsNullOrWhiteSpace(Region)) problems.Add("STREAMSPACE_REGION must not be empty");
        if (ReconnectMinDelay <= TimeSpan.Zero || ReconnectMaxDelay < ReconnectMinDelay) problems.Add("ReconnectMinDelay must be positive and not above ReconnectMaxDelay");
        if (HandshakeTimeout <= TimeSpan.Zero) problems.Add("HandshakeTimeout must be positive");
        if (KeepAliveInterval <= TimeSpan.Zero) problems.Add("KeepAliveInterval must be positive");
        if (KeepAliveTimeout <= TimeSpan.Zero || KeepAliveTimeout > TimeSpan.FromHours(1)) problems.Add("KeepAliveTimeout must be positive and at most one hour");
        if (CommandRetention < CommandRecords.MinRetention) problems.Add("CommandRetention must be at least 24 hours (contract §5)");
        if (SessionUserProblem() is { } sessionUser) problems.Add(sessionUser);
        if (string.IsNullOrWhiteSpace(XvncPath)) problems.Add("XvncPath is required");
        if (!System.Text.RegularExpressions.Regex.IsMatch(Geometry, @"^[0-9]{3,5}x[0-9]{3,5}\z")) problems.Add("Geometry must look like 1280x800");
        if (FirstDisplay is < 1 or > 60_000) problems.Add("FirstDisplay must be between 1 and 60000");
        if (DisplayCount is < 1 or > 10_000) problems.Add("DisplayCount must be between 1 and 10000");
        if (SessionStartTimeout <= TimeSpan.Zero) problems.Add("SessionStartTimeout must be positive");
        if (StopGracePeriod < TimeSpan.Zero) problems.Add("StopGracePeriod must not be negative");
        if (MonitorInterval <= TimeSpan.Zero) problems.Add("MonitorInterval must be positive");
        if (SessionLogMaxBytes < MinSessionLogMaxBytes) problems.Add($"SessionLogMaxBytes (StreamSpace__Agent__SessionLogMaxBytes) must be at least {MinSessionLogMaxBytes}");
        if (SessionMaxProcesses is < 16 or > 4_194_304) problems.Add("SessionMaxProcesses (STREAMSPACE_SESSION_MAX_PROCESSES) must be between 16 and 4194304");
        if (problems.Count > 0)
        {
            throw new AgentOptionsException("invalid agent configuration: " + string.Join("; ", problems));
        }
    }

    /// <summary>
    /// Why <see cref="SessionUser"/> cannot name the session accounts, or null. Checked before anything starts: useradd
    /// refuses a name outside its account-name rule (<c>bad:user</c> would also break <c>/etc/passwd</c>'s format), and a per-owner account adds <c>-</c> and 16 hex digits to the prefix, within Linux's 32 characters.
    /// </summary>
    public string? SessionUserProblem()
    {
        const string Variable = "STREAMSPACE_SESSION_USER";
        if (string.IsNullOrWhiteSpace(SessionUser) || SessionUser == "root") return $"{Variable} must name an unprivileged user";
        if (!AccountNameRule().IsMatch(SessionUser) || SessionUser.All(char.IsAsciiDigit) || SessionUser is "." or "..")
            return $"{Variable} '{Printable(SessionUser)}' is not a valid account name: {AccountNameRuleText}";
        if (SessionUserPerOwner && SessionUser.EndsWith('$'))
            return $"{Variable} '{SessionUser}' is the prefix of per-owner accounts and cannot end in '$' (only an account name's last character may be one)";
        if (SessionUserPerOwner && SessionUser.Length > Runtimes.Process.SessionUser.MaxPrefixLength)
            return $"{Variable} '{SessionUser}' is the prefix of per-owner accounts and may have at most {Runtimes.Process.SessionUser.MaxPrefixLength} characters";
        if (SessionUser.Length > MaxAccountNameLength)
            return $"{Variable} '{SessionUser}' may have at most {MaxAccountNameLength} characters";
        return null;
    }

    /// <summary>Throws <see cref="AgentOptionsException"/> when <see cref="SessionUserProblem"/> finds one (for callers that do not <see cref="Validate"/>).</summary>
    public void ValidateSessionUser()
    {
        if (SessionUserProblem() is { } problem) throw new AgentOptionsException("invalid agent configuration: " + problem);
    }

    /// <summary>
    /// <see cref="Validate"/> for an agent whose host sets its identity, runtime, capacity, region and heartbeat later (the
    /// embedded agent, whose control plane checks the rest before it starts): every other setting is checked now.
    /// </summary>
    public void ValidateExceptIdentity()
    {
        var probe = (AgentOptions)MemberwiseClone();
        probe.ControlPlaneUrl = "http://127.0.0.1";
        probe.AgentId = "embedded";
        probe.Token = "embedded";
        probe.Runtime = Platforms.Process;
        probe.HeartbeatSeconds = 10;
        probe.MaxSessions = 1;
        probe.Region = "embedded";
        if (string.IsNullOrWhiteSpace(probe.StateFolder)) probe.StateFolder = "embedded";
        probe.Validate();
    }

    /// <summary>Linux account names: at most 32 characters (utmp, and what shadow's useradd accepts).</summary>
    private const int MaxAccountNameLength = 32;

    /// <summary>
    /// The names Debian's useradd takes without <c>--badname</c> (shadow's is_valid_user_name): letters, digits, '.', '_'
    /// and '-', not beginning with '-', optionally ending in '$', not only digits and not "." or "..". Anything else
    /// (':', '/', whitespace) breaks /etc/passwd or paths; narrower than that would refuse names that worked before.
    /// </summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?\z")]
    private static partial System.Text.RegularExpressions.Regex AccountNameRule();

    private const string AccountNameRuleText = "letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits";

    /// <summary>A configured value as one line of an error message: control characters (a newline) shown as '?'.</summary>
    private static string Printable(string value) => string.Concat(value.Select(c => char.IsControl(c) ? '?' : c));

    /// <summary>
    /// Makes the state folder when it is missing and checks the agent can write there, before anything starts; throws
    /// <see cref="AgentOptionsException"/> naming the folder and why when it cannot (a file where a folder must be, no
    /// permission). Not part of <see cref="Validate"/>, which touches nothing: the standalone agent may still move its
    /// default folder after validating (<see cref="StateFolderChoice"/>).
    /// </summary>
    public void EnsureStateFolder()
    {
        try
        {
            Directory.CreateDirectory(StateFolder);
            // Every command is recorded there before it runs: a folder the agent cannot write would refuse them all.
            using (File.Create(Path.Combine(StateFolder, $".write-check-{Guid.NewGuid():N}"), 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new AgentOptionsException(
                $"invalid agent configuration: the state folder {StateFolder} cannot be used ({ex.Message}); STREAMSPACE_AGENT_STATE sets it", ex);
        }
    }

    /// <summary>The control WebSocket URL: ws(s)://host/base/api/v1/agents/connect.</summary>
    public Uri ConnectUri()
    {
        var builder = new UriBuilder(ControlPlaneUrl);
        builder.Scheme = builder.Scheme == Uri.UriSchemeHttps ? "wss" : "ws";
        builder.Path = builder.Path.TrimEnd('/') + "/api/v1/agents/connect";
        return builder.Uri;
    }
}

/// <summary>The agent configuration is unusable; the message names each problem.</summary>
public sealed class AgentOptionsException : Exception
{
    public AgentOptionsException(string message) : base(message) { }
    public AgentOptionsException() { }
    public AgentOptionsException(string message, Exception inner) : base(message, inner) { }
}
