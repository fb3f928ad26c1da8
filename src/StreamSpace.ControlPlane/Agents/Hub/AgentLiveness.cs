namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// The liveness decisions of one replica, free of I/O so they can be tested with a fake clock.
/// An agent is online while its CURRENT connection (the newest accepted one) has been heard within
/// <see cref="OfflineAfter"/>. Every event names its connection id (epoch): an event from a replaced
/// connection is reported as stale and changes nothing, so a stale socket's cleanup can never mark its
/// replacement offline (invariant 1). Not thread-safe: <see cref="AgentConnectionRegistry"/> serializes it.
/// </summary>
public sealed class AgentLiveness(TimeSpan offlineAfter)
{
    private readonly Dictionary<string, Entry> _current = new(StringComparer.Ordinal);

    public TimeSpan OfflineAfter { get; } = offlineAfter;

    public int Count => _current.Count;

    /// <summary>A new connection was accepted; it becomes current. Returns the connection id it replaced, if any.</summary>
    public string? Connected(string agentId, string connectionId, DateTimeOffset now)
    {
        var replaced = _current.TryGetValue(agentId, out var old) ? old.ConnectionId : null;
        _current[agentId] = new Entry(connectionId, now);
        return replaced;
    }

    /// <summary>A frame arrived. False when the connection is not current (replaced or timed out): the caller closes it.</summary>
    public bool Heard(string agentId, string connectionId, DateTimeOffset now)
    {
        if (!_current.TryGetValue(agentId, out var entry) || entry.ConnectionId != connectionId) return false;
        if (now > entry.LastHeard) _current[agentId] = entry with { LastHeard = now };
        return true;
    }

    /// <summary>The socket ended. True only when it was the current connection: then, and only then, the agent goes offline.</summary>
    public bool Closed(string agentId, string connectionId)
    {
        if (!_current.TryGetValue(agentId, out var entry) || entry.ConnectionId != connectionId) return false;
        _current.Remove(agentId);
        return true;
    }

    /// <summary>Removes and returns every current connection silent for longer than <see cref="OfflineAfter"/>.</summary>
    public IReadOnlyList<(string AgentId, string ConnectionId)> TakeTimedOut(DateTimeOffset now)
    {
        List<(string, string)>? expired = null;
        foreach (var (agentId, entry) in _current)
        {
            if (now - entry.LastHeard > OfflineAfter) (expired ??= []).Add((agentId, entry.ConnectionId));
        }
        if (expired is null) return [];
        foreach (var (agentId, _) in expired) _current.Remove(agentId);
        return expired;
    }

    public bool IsOnline(string agentId, DateTimeOffset now) =>
        _current.TryGetValue(agentId, out var entry) && now - entry.LastHeard <= OfflineAfter;

    public bool IsCurrent(string agentId, string connectionId) =>
        _current.TryGetValue(agentId, out var entry) && entry.ConnectionId == connectionId;

    private readonly record struct Entry(string ConnectionId, DateTimeOffset LastHeard);
}
