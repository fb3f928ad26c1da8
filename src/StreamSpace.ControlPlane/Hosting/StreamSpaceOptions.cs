using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Every setting of the control plane. Read from <c>STREAMSPACE_*</c> environment variables or the
/// <c>StreamSpace:*</c> configuration section (so <c>StreamSpace__Database</c> works too); validated on start.
/// </summary>
public sealed class StreamSpaceOptions
{
    public string DataFolder { get; set; } = "./data";
    public string? Database { get; set; }
    public string? AdminPassword { get; set; }
    public bool EmbeddedAgent { get; set; }
    /// <summary>Capacity of the embedded local agent (registered on its first start; an admin may change it later).</summary>
    public int EmbeddedAgentMaxSessions { get; set; } = 10;
    /// <summary>
    /// Agent id of the embedded agent. Replicas sharing one database each need their own: the agent row belongs to one
    /// replica's agent, whose sessions run on that replica's host.
    /// </summary>
    public string EmbeddedAgentId { get; set; } = "local";
    /// <summary>JWT signing key (base64, ≥ 32 bytes). Generated and stored in the database when absent.</summary>
    public string? JwtSigningKey { get; set; }
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(12);
    /// <summary>Default quota of live sessions for a new user.</summary>
    public int DefaultMaxSessions { get; set; } = 5;
    /// <summary>Heartbeat interval told to agents; an agent silent for 3 intervals is offline.</summary>
    public int HeartbeatSeconds { get; set; } = 10;
    public int MissedHeartbeatsBeforeOffline { get; set; } = 3;
    /// <summary>How long a command may wait for its agent before it expires and fails its session; at most <see cref="MaxCommandTtl"/>.</summary>
    public TimeSpan CommandTtl { get; set; } = TimeSpan.FromMinutes(10);
    /// <summary>
    /// How long a deleted user's <c>home.delete</c> may wait for an agent that is away: the longest TTL there is
    /// (<see cref="MaxCommandTtl"/>), since nothing else would ever remove that home.
    /// </summary>
    public TimeSpan HomeDeleteCommandTtl { get; set; } = MaxCommandTtl;
    /// <summary>How long a sent command may stay unacknowledged before it is sent again.</summary>
    public TimeSpan CommandAckTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>How long an acknowledged command may run without a result before it is sent again (the agent dedupes).</summary>
    public TimeSpan CommandResultTimeout { get; set; } = TimeSpan.FromSeconds(60);
    /// <summary>Cap of the exponential backoff factor applied to <see cref="CommandAckTimeout"/> on each redelivery.</summary>
    public int CommandBackoffMaxFactor { get; set; } = 8;
    /// <summary>How long a finished command (succeeded, failed, expired) is kept before it is pruned; open ones are never pruned.</summary>
    public TimeSpan CommandRetention { get; set; } = TimeSpan.FromDays(7);
    /// <summary>How often finished commands older than <see cref="CommandRetention"/> are pruned (also once at start).</summary>
    public TimeSpan CommandPruneInterval { get; set; } = TimeSpan.FromHours(1);
    /// <summary>
    /// How long an ended session (terminated or failed) is kept, counted from when it ended, before it is deleted with its
    /// finished commands and viewer tickets (<see cref="Sessions.EndedSessionPruner"/>); 0 = kept forever. The audit log
    /// is never pruned.
    /// </summary>
    public TimeSpan SessionRetention { get; set; } = TimeSpan.FromDays(30);
    /// <summary>How often ended sessions older than <see cref="SessionRetention"/> are deleted (also once at start).</summary>
    public TimeSpan SessionPruneInterval { get; set; } = TimeSpan.FromHours(1);
    /// <summary>How often each replica looks for due commands (also ones written by other replicas).</summary>
    public TimeSpan CommandPollInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How long a new agent connection may take to send its hello.</summary>
    public TimeSpan HelloTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>How often buffered heartbeats are written to the agents table, in one transaction.</summary>
    public TimeSpan HeartbeatFlushInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>How often the hub checks its own connections for silence (in memory, cheap).</summary>
    public TimeSpan LivenessCheckInterval { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>How often the database sweep marks offline agents whose replica died (and closes deleted agents' sockets).</summary>
    public TimeSpan OfflineSweepInterval { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>Extra silence beyond the heartbeat timeout before the database sweep marks an agent offline: covers heartbeat batching.</summary>
    public TimeSpan OfflineSweepGrace { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>How often a connected agent's tracked inventory is reconciled with the sessions table (also on every hello).</summary>
    public TimeSpan ReconcileInterval { get; set; } = TimeSpan.FromSeconds(60);
    /// <summary>How often the control plane pings the peer of every WebSocket it accepted (agents' control and data sockets, viewers).</summary>
    public TimeSpan WebSocketKeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);
    /// <summary>
    /// How long a ping may go unanswered before the socket is aborted: a peer that vanished without closing (a viewer's
    /// laptop asleep, an agent host without power) ends its relay within interval + timeout instead of ~15 min of TCP
    /// retransmissions.
    /// </summary>
    public TimeSpan WebSocketKeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>A running session without viewer input this long is hibernated or terminated (<see cref="IdleAction"/>); 0 = never.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.Zero;
    /// <summary>What idle handling does: <c>hibernate</c> (default) or <c>terminate</c>.</summary>
    public string IdleAction { get; set; } = IdleHibernate;
    /// <summary>How often running sessions are checked for idleness.</summary>
    public TimeSpan IdleCheckInterval { get; set; } = TimeSpan.FromMinutes(1);
    public const string IdleHibernate = "hibernate";
    public const string IdleTerminate = "terminate";
    public int LoginAttemptsPerUsernamePerMinute { get; set; } = 10;
    public int LoginAttemptsPerClientPerMinute { get; set; } = 30;

    /// <summary>Silence after which an agent is offline: <see cref="MissedHeartbeatsBeforeOffline"/> heartbeat intervals.</summary>
    public TimeSpan AgentOfflineAfter => TimeSpan.FromSeconds((double)HeartbeatSeconds * MissedHeartbeatsBeforeOffline);
    /// <summary>Largest request body accepted by the API (413 beyond).</summary>
    public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    public static StreamSpaceOptions FromConfiguration(IConfiguration config)
    {
        var o = new StreamSpaceOptions();
        string? Env(string name) => config[name] is { Length: > 0 } v ? v : null;
        o.DataFolder = Env("STREAMSPACE_DATA") ?? o.DataFolder;
        o.Database = Env("STREAMSPACE_DATABASE") ?? o.Database;
        o.AdminPassword = Env("STREAMSPACE_ADMIN_PASSWORD") ?? o.AdminPassword;
        o.JwtSigningKey = Env("STREAMSPACE_JWT_KEY") ?? o.JwtSigningKey;
        if (Env("STREAMSPACE_EMBEDDED_AGENT") is { } embedded) o.EmbeddedAgent = ParseBool(embedded, "STREAMSPACE_EMBEDDED_AGENT");
        if (Env("STREAMSPACE_HEARTBEAT_SECONDS") is { } hb)
            o.HeartbeatSeconds = int.TryParse(hb, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
                ? seconds : throw new StreamSpaceConfigurationException($"STREAMSPACE_HEARTBEAT_SECONDS must be a whole number, got '{hb}'");
        // The StreamSpace section (StreamSpace__X variables, --StreamSpace:X arguments) wins over STREAMSPACE_X.
        StreamSpaceConfigurationException.Binding(() => config.GetSection("StreamSpace").Bind(o));
        // The Agent section too, with the embedded agent off as well (its settings are then read by nobody, and a typo
        // there would only surface the day it is turned on); Web and Streaming check theirs below.
        StreamSpaceConfigurationException.ThrowIfAny([
            .. Agent.Hosting.SettingNames.Unknown(config.GetSection("StreamSpace"), typeof(StreamSpaceOptions), "Agent", "Web", "Streaming"),
            .. Agent.Hosting.SettingNames.Unknown(config.GetSection(Agent.Hosting.AgentOptions.ConfigurationSection), typeof(Agent.Hosting.AgentOptions)),
        ]);
        o.DataFolder = Path.GetFullPath(o.DataFolder);
        o.Validate();
        // The web UI's and the streaming sections (StreamSpace__Web__X, StreamSpace__Streaming__X) too, so their bad values
        // also stop the start before anything runs, in one line, rather than in ValidateOnStart's stack trace or a timer's.
        _ = Web.WebUiOptions.FromConfiguration(config);
        _ = Streaming.StreamingOptions.FromConfiguration(config);
        return o;
    }

    private static bool ParseBool(string value, string name) => value.Trim().ToLowerInvariant() switch
    {
        "1" or "true" or "yes" or "on" => true,
        "0" or "false" or "no" or "off" => false,
        _ => throw new StreamSpaceConfigurationException($"{name} must be true or false, got '{value}'"),
    };

    /// <summary>
    /// The longest period of a timer (<see cref="PeriodicTimer"/>, <see cref="CancellationTokenSource.CancelAfter(TimeSpan)"/>):
    /// they take at most 2^32-2 ms, about 49.7 days, and throw at run time beyond.
    /// </summary>
    public static readonly TimeSpan MaxTimerPeriod = TimeSpan.FromDays(49);
    /// <summary>Longest lifetime of an API token; a longer one would rather be no expiry at all.</summary>
    public static readonly TimeSpan MaxTokenLifetime = TimeSpan.FromDays(365);
    /// <summary>Longest ack and result timeout of a command.</summary>
    public static readonly TimeSpan MaxCommandTimeout = TimeSpan.FromDays(365);
    /// <summary>
    /// Longest command TTL: how long agents keep a finished command's record (<see cref="CommandRecords.MinRetention"/>).
    /// A command still redelivered after its agent forgot it would run a second time (invariant 2).
    /// </summary>
    public static readonly TimeSpan MaxCommandTtl = CommandRecords.MinRetention;

    /// <summary>The refusal of a command TTL above <see cref="MaxCommandTtl"/>, with the reason.</summary>
    internal static string CommandTtlTooLong(string name) =>
        $"{name} must be positive and at most {MaxCommandTtl:c}: agents remember a finished command for 24 h, and one redelivered later could run twice";
    /// <summary>Longest look-back (retention, idle timeout): <c>now - x</c> must stay a date.</summary>
    public static readonly TimeSpan MaxLookBack = TimeSpan.FromDays(36_500);
    /// <summary>
    /// Shortest <see cref="SessionRetention"/> other than 0 (forever): a user whose session just ended must still find it
    /// and why it ended (<c>stateReason</c>), and a value meant in days but written as hours (<c>00:30:00</c>) must not
    /// delete the history of the last month.
    /// </summary>
    public static readonly TimeSpan MinSessionRetention = TimeSpan.FromHours(1);
    public const int MaxBackoffFactor = 1024;
    public const int MaxMissedHeartbeats = 100;
    /// <summary>Largest <see cref="MaxRequestBodyBytes"/>: the API takes JSON and template YAML, never files.</summary>
    public const long MaxRequestBodyLimit = 1L << 30;
    public const long MinRequestBodyLimit = 1024;
    public const int MinJwtKeyBytes = 32;

    public void Validate()
    {
        var errors = new List<string>();
        void Interval(TimeSpan value, string name)
        {
            if (value <= TimeSpan.Zero) errors.Add($"StreamSpace__{name} must be positive");
            else if (value > MaxTimerPeriod) errors.Add($"StreamSpace__{name} must be at most {MaxTimerPeriod:c}");
        }
        void Duration(TimeSpan value, string name, TimeSpan max)
        {
            if (value <= TimeSpan.Zero) errors.Add($"StreamSpace__{name} must be positive");
            else if (value > max) errors.Add($"StreamSpace__{name} must be at most {max:c}");
        }

        if (EmbeddedAgentMaxSessions is < 1 or > 10_000) errors.Add("StreamSpace__EmbeddedAgentMaxSessions must be between 1 and 10000");
        if (!Agents.AgentsApi.AgentIdPattern().IsMatch(EmbeddedAgentId))
            errors.Add("StreamSpace__EmbeddedAgentId must be 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
        else if (Agents.AgentsApi.ReservedAgentIdReason(EmbeddedAgentId) is { } reserved)
            errors.Add($"StreamSpace__EmbeddedAgentId: {reserved}");
        if (DefaultMaxSessions is < 0 or > Identity.UsersApi.MaxSessionsLimit)
            errors.Add($"StreamSpace__DefaultMaxSessions must be between 0 and {Identity.UsersApi.MaxSessionsLimit}");
        if (HeartbeatSeconds is < 1 or > 3600) errors.Add("STREAMSPACE_HEARTBEAT_SECONDS (StreamSpace__HeartbeatSeconds) must be between 1 and 3600");
        if (MissedHeartbeatsBeforeOffline is < 1 or > MaxMissedHeartbeats)
            errors.Add($"StreamSpace__MissedHeartbeatsBeforeOffline must be between 1 and {MaxMissedHeartbeats}");
        if (CommandTtl <= TimeSpan.Zero || CommandTtl > MaxCommandTtl) errors.Add(CommandTtlTooLong($"StreamSpace__{nameof(CommandTtl)}"));
        if (HomeDeleteCommandTtl <= TimeSpan.Zero || HomeDeleteCommandTtl > MaxCommandTtl)
            errors.Add(CommandTtlTooLong($"StreamSpace__{nameof(HomeDeleteCommandTtl)}"));
        Duration(CommandAckTimeout, nameof(CommandAckTimeout), MaxCommandTimeout);
        Duration(CommandResultTimeout, nameof(CommandResultTimeout), MaxCommandTimeout);
        if (CommandBackoffMaxFactor is < 1 or > MaxBackoffFactor) errors.Add($"StreamSpace__CommandBackoffMaxFactor must be between 1 and {MaxBackoffFactor}");
        Duration(CommandRetention, nameof(CommandRetention), MaxLookBack);
        Interval(CommandPruneInterval, nameof(CommandPruneInterval));
        if (SessionRetention != TimeSpan.Zero && SessionRetention < MinSessionRetention)
            errors.Add($"StreamSpace__SessionRetention must be 0 (keep ended sessions forever) or at least {MinSessionRetention:c}");
        else if (SessionRetention > MaxLookBack) errors.Add($"StreamSpace__SessionRetention must be at most {MaxLookBack:c}");
        Interval(SessionPruneInterval, nameof(SessionPruneInterval));
        Interval(CommandPollInterval, nameof(CommandPollInterval));
        Interval(HelloTimeout, nameof(HelloTimeout));
        Interval(HeartbeatFlushInterval, nameof(HeartbeatFlushInterval));
        Interval(LivenessCheckInterval, nameof(LivenessCheckInterval));
        Interval(OfflineSweepInterval, nameof(OfflineSweepInterval));
        if (OfflineSweepGrace < TimeSpan.Zero || OfflineSweepGrace > MaxTimerPeriod)
            errors.Add($"StreamSpace__OfflineSweepGrace must be between 0 and {MaxTimerPeriod:c}");
        Interval(ReconcileInterval, nameof(ReconcileInterval));
        Interval(WebSocketKeepAliveInterval, nameof(WebSocketKeepAliveInterval));
        Interval(WebSocketKeepAliveTimeout, nameof(WebSocketKeepAliveTimeout));
        // Input reaches the database every few seconds (the relay's activity flush): shorter timeouts would idle active users.
        if (IdleTimeout != TimeSpan.Zero && IdleTimeout < TimeSpan.FromMinutes(1)) errors.Add("StreamSpace__IdleTimeout must be 0 (off) or at least 00:01:00");
        else if (IdleTimeout > MaxLookBack) errors.Add($"StreamSpace__IdleTimeout must be at most {MaxLookBack:c}");
        if (IdleAction is not (IdleHibernate or IdleTerminate)) errors.Add($"StreamSpace__IdleAction must be '{IdleHibernate}' or '{IdleTerminate}', got '{IdleAction}'");
        Interval(IdleCheckInterval, nameof(IdleCheckInterval));
        Duration(TokenLifetime, nameof(TokenLifetime), MaxTokenLifetime);
        if (LoginAttemptsPerUsernamePerMinute < 1) errors.Add("StreamSpace__LoginAttemptsPerUsernamePerMinute must be >= 1");
        if (LoginAttemptsPerClientPerMinute < 1) errors.Add("StreamSpace__LoginAttemptsPerClientPerMinute must be >= 1");
        if (MaxRequestBodyBytes is < MinRequestBodyLimit or > MaxRequestBodyLimit)
            errors.Add($"StreamSpace__MaxRequestBodyBytes must be between {MinRequestBodyLimit} and {MaxRequestBodyLimit}");
        if (AdminPassword is { Length: < 8 }) errors.Add("STREAMSPACE_ADMIN_PASSWORD must be at least 8 characters");
        // Never echoes the value: it is a secret.
        if (JwtSigningKey is { Length: > 0 } key && !IsJwtKey(key))
            errors.Add($"STREAMSPACE_JWT_KEY must be base64 of at least {MinJwtKeyBytes} bytes (e.g. the output of 'openssl rand -base64 48')");
        StreamSpaceConfigurationException.ThrowIfAny(errors);
    }

    private static bool IsJwtKey(string key)
    {
        var bytes = new byte[(key.Length * 3 / 4) + 3];
        return Convert.TryFromBase64String(key.Trim(), bytes, out var written) && written >= MinJwtKeyBytes;
    }
}

/// <summary>A setting the control plane cannot start with; the message names the setting and what it takes.</summary>
public sealed class StreamSpaceConfigurationException(string message, Exception? inner = null) : InvalidOperationException(message, inner)
{
    /// <summary>
    /// Runs <paramref name="bind"/> (a section's Bind, at the call site so the configuration binder's generated code
    /// knows the options type); a value that does not convert is this exception, saying it in an operator's words
    /// (<see cref="Agent.Hosting.SettingNames.ConversionFailure"/>).
    /// </summary>
    public static void Binding(Action bind)
    {
        try
        {
            bind();
        }
        catch (InvalidOperationException ex)
        {
            throw new StreamSpaceConfigurationException("Invalid StreamSpace configuration: " + Agent.Hosting.SettingNames.ConversionFailure(ex.Message), ex);
        }
    }

    /// <summary>Throws this exception listing <paramref name="errors"/>, when there are any.</summary>
    public static void ThrowIfAny(IReadOnlyCollection<string> errors)
    {
        if (errors.Count > 0) throw new StreamSpaceConfigurationException("Invalid StreamSpace configuration: " + string.Join("; ", errors));
    }

    /// <summary>A URL-like value as an error repeats it: the password of a <c>user:password@</c> in it is not printed.</summary>
    public static string WithoutPassword(string value)
    {
        // A URL's password runs to the last '@' (a password may hold an '@' of its own; hiding more is harmless); a
        // connection string's runs to the next ';' (Password= or its alias Pwd=, spaces allowed around the '=').
        var url = System.Text.RegularExpressions.Regex.Replace(value, "(://[^:/@]*:).*@", "$1***@");
        return System.Text.RegularExpressions.Regex.Replace(url, @"(?i)\b(password|pwd)(\s*=\s*)[^;]*", "$1$2***");
    }
}
