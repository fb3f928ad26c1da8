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
    /// Extra browser origins (scheme://host[:port]) allowed to open the viewer WebSocket besides the
    /// control plane's own origin, e.g. the public https:// origin when a TLS proxy forwards plain http.
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

    public IEnumerable<string> Validate()
    {
        if (TicketLifetime <= TimeSpan.Zero || TicketLifetime > TimeSpan.FromSeconds(60))
            yield return "Streaming:TicketLifetime must be positive and at most 60 s";
        if (RendezvousTimeout <= TimeSpan.Zero) yield return "Streaming:RendezvousTimeout must be positive";
        if (DataTokenLifetime <= TimeSpan.Zero || DataTokenLifetime > TimeSpan.FromSeconds(30))
            yield return "Streaming:DataTokenLifetime must be positive and at most 30 s";
        if (RendezvousTimeout > DataTokenLifetime) yield return "Streaming:RendezvousTimeout must not exceed DataTokenLifetime";
        if (StreamOpenCommandTtl <= TimeSpan.Zero) yield return "Streaming:StreamOpenCommandTtl must be positive";
        if (ActivityFlushInterval <= TimeSpan.Zero) yield return "Streaming:ActivityFlushInterval must be positive";
        if (CloseTimeout <= TimeSpan.Zero) yield return "Streaming:CloseTimeout must be positive";
        foreach (var origin in AllowedOrigins)
        {
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.PathAndQuery != "/")
                yield return $"Streaming:AllowedOrigins entry '{origin}' must be scheme://host[:port]";
        }
        if (!string.IsNullOrEmpty(ReplicaUrl)
            && (!Uri.TryCreate(ReplicaUrl, UriKind.Absolute, out var replica) || replica.Scheme is not ("http" or "https")
                || replica.Query.Length > 0 || replica.Fragment.Length > 0 || replica.UserInfo.Length > 0))
            yield return $"Streaming:ReplicaUrl '{ReplicaUrl}' must be http(s)://host[:port][/path] (this replica's own address as agents reach it)";
    }
}
