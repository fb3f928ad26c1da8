namespace StreamSpace.ControlPlane.Agents;

/// <summary>A row of <c>agents</c> with the count of live sessions placed on it (from <c>sessions</c>, the truth).</summary>
public sealed record AgentRecord
{
    public required string AgentId { get; init; }
    public required string Status { get; init; }
    public DateTimeOffset? LastHeartbeat { get; init; }
    public required string Platform { get; init; }
    public required string Region { get; init; }
    public int MaxSessions { get; init; }
    public long LiveSessions { get; init; }
    public string? Version { get; init; }
    public DateTimeOffset? ConnectedAt { get; init; }
    public bool Draining { get; init; }
    /// <summary>What the agent said in its last hello about enforcing session cpu/memory; null when it did not say.</summary>
    public string? SessionLimits { get; init; }

    /// <summary>Select list over <c>agents a</c>; the live-session count is a correlated subquery so it never drifts.</summary>
    public static string Columns =>
        "a.agent_id AS AgentId, a.status AS Status, a.last_heartbeat AS LastHeartbeat, a.platform AS Platform, a.region AS Region, " +
        "a.max_sessions AS MaxSessions, a.version AS Version, a.connected_at AS ConnectedAt, a.draining AS Draining, a.session_limits AS SessionLimits, " +
        $"(SELECT COUNT(*) FROM sessions s WHERE s.agent_id = a.agent_id AND s.state IN ({Sessions.SessionState.LiveSqlList})) AS LiveSessions";

    public AgentView ToView() => new(AgentId, Status, LastHeartbeat, Platform, Region, MaxSessions, (int)LiveSessions, Version, ConnectedAt, Draining, SessionLimits);
}

/// <summary>An agent as the admin API shows it (design §4).</summary>
public sealed record AgentView(
    string AgentId, string Status, DateTimeOffset? LastHeartbeat, string Platform, string Region, int Capacity,
    int ActiveSessions, string? Version, DateTimeOffset? ConnectedAt, bool Draining, string? SessionLimits);
