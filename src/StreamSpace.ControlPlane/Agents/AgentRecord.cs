namespace StreamSpace.ControlPlane.Agents;

/// <summary>A row of <c>agents</c> with the count of live sessions placed on it (the counter the database keeps from <c>sessions</c>).</summary>
public sealed record AgentRecord
{
    public required string AgentId { get; init; }
    public required string Status { get; init; }
    public DateTimeOffset? LastHeartbeat { get; init; }
    public required string Platform { get; init; }
    public required string Region { get; init; }
    /// <summary>The registered maximum (an admin's, <c>POST /api/v1/agents</c>).</summary>
    public int MaxSessions { get; init; }
    /// <summary>What the agent's last hello or heartbeat said it accepts; null before its first hello.</summary>
    public int? ReportedCapacity { get; init; }
    /// <summary>The sessions placement puts on the agent at most: the smaller of the two.</summary>
    public int Capacity => CapacityOf(MaxSessions, ReportedCapacity);

    /// <summary>What placement fills an agent up to: the registered maximum, or the agent's own figure when that is smaller.</summary>
    internal static int CapacityOf(int maxSessions, int? reportedCapacity) =>
        reportedCapacity is { } reported && reported < maxSessions ? reported : maxSessions;
    public long LiveSessions { get; init; }
    public string? Version { get; init; }
    public DateTimeOffset? ConnectedAt { get; init; }
    /// <summary>Drained by an admin (<c>agents.draining</c>): stays until an admin lifts it.</summary>
    public bool Draining { get; init; }
    /// <summary>The agent's own drain (<c>agents.agent_draining</c>): what its last hello or heartbeat said.</summary>
    public bool AgentDraining { get; init; }
    /// <summary>What the agent said in its last hello about enforcing session cpu/memory; null when it did not say.</summary>
    public string? SessionLimits { get; init; }

    /// <summary>
    /// Select list over <see cref="From"/>. The live-session count is the agent's row of <c>agent_live_sessions</c>, which the
    /// triggers on <c>sessions</c> keep in the same transaction as every write (migrations M0004, M0005), so it cannot drift
    /// from a count of the rows. Counting the rows instead read every session ever placed on the agent (the agent index
    /// holds no state): 650-700 ms per call at 520 000 sessions, and the admin agents page asks every 2 s.
    /// </summary>
    public static string Columns =>
        "a.agent_id AS AgentId, a.status AS Status, a.last_heartbeat AS LastHeartbeat, a.platform AS Platform, a.region AS Region, " +
        "a.max_sessions AS MaxSessions, a.reported_capacity AS ReportedCapacity, a.version AS Version, a.connected_at AS ConnectedAt, a.draining AS Draining, a.agent_draining AS AgentDraining, a.session_limits AS SessionLimits, " +
        "COALESCE(l.live, 0) AS LiveSessions";

    /// <summary>The FROM clause <see cref="Columns"/> reads: <c>agents a</c> and its live-session counter (none before its first session).</summary>
    public const string From = "agents a LEFT JOIN agent_live_sessions l ON l.agent_id = a.agent_id";

    public AgentView ToView() => new(AgentId, Status, LastHeartbeat, Platform, Region, Capacity, (int)LiveSessions, Version, ConnectedAt,
        Draining || AgentDraining, Draining, AgentDraining, SessionLimits, MaxSessions, ReportedCapacity);
}

/// <summary>
/// An agent as the admin API shows it (design §4). <see cref="Draining"/> is whether placement skips it as draining, for
/// either reason: <see cref="AdminDraining"/> (an admin's drain, lifted by <c>POST /api/v1/agents/{id}/undrain</c>) or
/// <see cref="AgentDraining"/> (the agent said it is draining, as it does while it stops; its next hello clears it).
/// <see cref="Capacity"/> is what placement fills the agent up to: the smaller of <see cref="MaxSessions"/> (registered by
/// an admin) and <see cref="ReportedCapacity"/> (what the agent said last; null before its first hello).
/// </summary>
public sealed record AgentView(
    string AgentId, string Status, DateTimeOffset? LastHeartbeat, string Platform, string Region, int Capacity,
    int ActiveSessions, string? Version, DateTimeOffset? ConnectedAt, bool Draining, bool AdminDraining, bool AgentDraining, string? SessionLimits,
    int MaxSessions, int? ReportedCapacity);
