using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// The agent connections held by this replica: by agent id, the CURRENT connection only, with the
/// liveness decisions of <see cref="AgentLiveness"/> applied under one lock.
/// </summary>
public sealed class AgentConnectionRegistry(IOptions<StreamSpaceOptions> options)
{
    private readonly Lock _lock = new();
    private readonly AgentLiveness _liveness = new(options.Value.AgentOfflineAfter);
    private readonly Dictionary<string, AgentConnection> _byAgent = new(StringComparer.Ordinal);

    public int Count
    {
        get { lock (_lock) return _byAgent.Count; }
    }

    /// <summary>Makes <paramref name="connection"/> the agent's current one; returns the connection it replaced (to be closed).</summary>
    public AgentConnection? Register(AgentConnection connection, DateTimeOffset now)
    {
        lock (_lock)
        {
            _liveness.Connected(connection.AgentId, connection.ConnectionId, now);
            _byAgent.Remove(connection.AgentId, out var replaced);
            _byAgent[connection.AgentId] = connection;
            return replaced;
        }
    }

    /// <summary>Records that a frame arrived. False when the connection is no longer current.</summary>
    public bool Heard(AgentConnection connection, DateTimeOffset now)
    {
        lock (_lock) return _liveness.Heard(connection.AgentId, connection.ConnectionId, now);
    }

    /// <summary>Forgets an ended connection. True when it was current: the caller marks the agent offline.</summary>
    public bool Remove(AgentConnection connection)
    {
        lock (_lock)
        {
            if (!_liveness.Closed(connection.AgentId, connection.ConnectionId)) return false;
            _byAgent.Remove(connection.AgentId);
            return true;
        }
    }

    /// <summary>Removes and returns the connections silent for too long; the caller closes them and marks them offline.</summary>
    public IReadOnlyList<AgentConnection> TakeTimedOut(DateTimeOffset now)
    {
        lock (_lock)
        {
            var expired = _liveness.TakeTimedOut(now);
            var connections = new List<AgentConnection>(expired.Count);
            foreach (var (agentId, _) in expired)
            {
                if (_byAgent.Remove(agentId, out var c)) connections.Add(c);
            }
            return connections;
        }
    }

    public AgentConnection? Find(string agentId)
    {
        lock (_lock) return _byAgent.GetValueOrDefault(agentId);
    }

    public bool IsCurrent(string agentId, string connectionId)
    {
        lock (_lock) return _liveness.IsCurrent(agentId, connectionId);
    }

    public IReadOnlyList<AgentConnection> Snapshot()
    {
        lock (_lock) return [.. _byAgent.Values];
    }
}
