using System.Net.WebSockets;

namespace StreamSpace.Agent.Streaming;

/// <summary>
/// The open stream bridges of each session on this agent. A bridge outlives the <c>stream.open</c> command that
/// opened it, so the session's later commands find it here: a hibernate or stop ends the session's streams with a
/// reason for their viewers before it touches the processes. Without that, a hibernated Xvnc keeps its connections
/// open: the viewer shows a frozen desktop as "Connected", and the keys typed into it wait in the kernel to be
/// replayed on wake.
/// </summary>
internal sealed class SessionStreams
{
    /// <summary>What the viewer of a session being hibernated is told.</summary>
    public const string HibernatingReason = "The session is being hibernated.";
    /// <summary>What the viewer of a session being stopped is told.</summary>
    public const string StoppingReason = "The session is being stopped.";

    private readonly Dictionary<string, HashSet<StreamBridge>> _bySession = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public void Add(string sessionId, StreamBridge bridge)
    {
        lock (_gate)
        {
            if (!_bySession.TryGetValue(sessionId, out var bridges)) _bySession[sessionId] = bridges = [];
            bridges.Add(bridge);
        }
    }

    /// <summary>Forgets a bridge that ended.</summary>
    public void Remove(string sessionId, StreamBridge bridge)
    {
        lock (_gate)
        {
            if (_bySession.TryGetValue(sessionId, out var bridges) && bridges.Remove(bridge) && bridges.Count == 0) _bySession.Remove(sessionId);
        }
    }

    /// <summary>
    /// Closes every open bridge of the session with <paramref name="status"/> and <paramref name="reason"/>. Returns once
    /// their VNC connections are closed (the close frames to the control plane follow on the bridges' own tasks).
    /// </summary>
    public Task CloseAsync(string sessionId, WebSocketCloseStatus status, string reason)
    {
        HashSet<StreamBridge>? bridges;
        lock (_gate)
        {
            if (!_bySession.Remove(sessionId, out bridges)) return Task.CompletedTask;
        }
        return Task.WhenAll(bridges.Select(b => b.CloseAsync(status, reason)));
    }
}
