namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Settings of viewer tickets and the stream relay (section <c>StreamSpace:Streaming</c>, e.g.
/// <c>StreamSpace__Streaming__TicketLifetime=00:00:30</c>). Validated on start.
/// </summary>
public sealed class StreamingOptions
{
    public const string Section = "StreamSpace:Streaming";

    /// <summary>How long a viewer ticket stays valid. Design §4 caps it at 60 s: it is a bearer credential in a URL.</summary>
    public TimeSpan TicketLifetime { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a viewer waits for the agent to dial the data socket back before it is closed with a reason.</summary>
    public TimeSpan RendezvousTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Life of the one-time data token kept in memory for the agent's dial-back (design: ≤ 30 s).</summary>
    public TimeSpan DataTokenLifetime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>TTL of the <c>stream.open</c> command: a stream request older than this is useless to the viewer.</summary>
    public TimeSpan StreamOpenCommandTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often the last viewer input time of each session is written to <c>sessions.last_activity_at</c>.</summary>
    public TimeSpan ActivityFlushInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long closing one side waits for the other side's close handshake before aborting it.</summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a send to a viewer may wait for the viewer to take the data before its connection is aborted: a viewer
    /// that stopped reading (a frozen tab, or on purpose) would otherwise hold its relay, its buffers and sockets, for
    /// ever, also after the session's side ended, since nothing reads that side while the send waits.
    /// </summary>
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Extra browser origins (scheme://host[:port]) allowed besides the control plane's own origin, e.g. the public
    /// https:// origin when a TLS proxy forwards plain http: for the viewer WebSocket, the web UI's hub and cookie API
    /// writes alike (<see cref="Web.BrowserOrigin"/>).
    /// </summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>
    /// This replica's own base URL as agents reach it (http(s)://host:port[/path]), e.g. the pod's address. With several
    /// replicas behind one address, an agent's data socket must reach the replica where the viewer waits: with this
    /// set, <c>stream.open</c> tells the agent to dial this URL (<see cref="StreamSpace.Protocol.StreamOpenArgs.DataUrl"/>)
    /// instead of its control-plane URL. Unset: agents dial their control-plane URL (right for one replica).
    /// </summary>
    public string? ReplicaUrl { get; set; }

    /// <summary>The data WebSocket's URL on this replica for <paramref name="dataPath"/>, or null without <see cref="ReplicaUrl"/>.</summary>
    public string? DataUrl(string dataPath) =>
        string.IsNullOrEmpty(ReplicaUrl) ? null : ReplicaUrl.TrimEnd('/') + "/" + dataPath.TrimStart('/');

    /// <summary>Longest <see cref="TicketLifetime"/>: design §4 caps it at 60 s, it is a bearer credential in a URL.</summary>
    public static readonly TimeSpan MaxTicketLifetime = TimeSpan.FromSeconds(60);
    /// <summary>Longest <see cref="DataTokenLifetime"/> (design: ≤ 30 s); <see cref="RendezvousTimeout"/> is at most the lifetime used.</summary>
    public static readonly TimeSpan MaxDataTokenLifetime = TimeSpan.FromSeconds(30);

    /// <summary>
    /// What is wrong with these settings, each naming the setting as an operator writes it
    /// (<c>StreamSpace__Streaming__CloseTimeout</c>) and the range it takes; empty when they are usable.
    /// </summary>
    public IEnumerable<string> Validate()
    {
        const string prefix = "StreamSpace__Streaming__";
        var maxTimer = Hosting.StreamSpaceOptions.MaxTimerPeriod;
        static bool InRange(TimeSpan value, TimeSpan max) => value > TimeSpan.Zero && value <= max;

        if (!InRange(TicketLifetime, MaxTicketLifetime))
            yield return $"{prefix}TicketLifetime must be positive and at most {MaxTicketLifetime:c}";
        if (!InRange(DataTokenLifetime, MaxDataTokenLifetime))
            yield return $"{prefix}DataTokenLifetime must be positive and at most {MaxDataTokenLifetime:c}";
        // The viewer waits for the agent's dial-back only as long as its token lives; a wrong lifetime is said once, above.
        var rendezvousMax = InRange(DataTokenLifetime, MaxDataTokenLifetime) ? DataTokenLifetime : MaxDataTokenLifetime;
        if (!InRange(RendezvousTimeout, rendezvousMax))
            yield return $"{prefix}RendezvousTimeout must be positive and at most {prefix}DataTokenLifetime ({rendezvousMax:c})";
        // Not a timer, but the command's expiry date: the same cap as every command TTL.
        if (!InRange(StreamOpenCommandTtl, Hosting.StreamSpaceOptions.MaxCommandTtl))
            yield return Hosting.StreamSpaceOptions.CommandTtlTooLong($"{prefix}StreamOpenCommandTtl");
        // A PeriodicTimer's period and a CancellationTokenSource's delay: beyond the cap they throw while running.
        if (!InRange(ActivityFlushInterval, maxTimer))
            yield return $"{prefix}ActivityFlushInterval must be positive and at most {maxTimer:c}";
        if (!InRange(CloseTimeout, maxTimer))
            yield return $"{prefix}CloseTimeout must be positive and at most {maxTimer:c}";
        if (!InRange(StallTimeout, maxTimer))
            yield return $"{prefix}StallTimeout must be positive and at most {maxTimer:c}";
        for (var i = 0; i < AllowedOrigins.Count; i++)
        {
            var origin = AllowedOrigins[i];
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.PathAndQuery != "/")
                yield return $"{prefix}AllowedOrigins__{i} must be scheme://host[:port], got '{Hosting.StreamSpaceConfigurationException.WithoutPassword(origin)}'";
        }
        if (!string.IsNullOrEmpty(ReplicaUrl)
            && (!Uri.TryCreate(ReplicaUrl, UriKind.Absolute, out var replica) || replica.Scheme is not ("http" or "https")
                || replica.Query.Length > 0 || replica.Fragment.Length > 0 || replica.UserInfo.Length > 0))
            yield return $"{prefix}ReplicaUrl must be http(s)://host[:port][/path] (this replica's own address as agents reach it), got '{Hosting.StreamSpaceConfigurationException.WithoutPassword(ReplicaUrl)}'";
    }

    /// <summary>
    /// Binds and checks the section before anything starts, throwing <see cref="Hosting.StreamSpaceConfigurationException"/>
    /// (one line and exit code 2, like every other setting) instead of failing the host's start with a stack trace.
    /// </summary>
    public static StreamingOptions FromConfiguration(IConfiguration config)
    {
        var o = new StreamingOptions();
        Hosting.StreamSpaceConfigurationException.Binding(() => config.GetSection(Section).Bind(o));
        Hosting.StreamSpaceConfigurationException.ThrowIfAny(Agent.Hosting.SettingNames.Unknown(config.GetSection(Section), typeof(StreamingOptions)));
        Hosting.StreamSpaceConfigurationException.ThrowIfAny(o.Validate().ToList());
        return o;
    }
}
