namespace StreamSpace.Protocol;

/// <summary>First message of an agent on a new control connection.</summary>
public sealed record HelloPayload
{
    public required string AgentId { get; init; }
    /// <summary>Agent software version.</summary>
    public required string Version { get; init; }
    public required string Platform { get; init; }
    public string? Region { get; init; }
    public required AgentCapacity Capacity { get; init; }
    public bool Draining { get; init; }
    /// <summary>
    /// Whether the agent enforces sessions' cpu/memory, in words for an operator ("enforced …" or "not enforced: why");
    /// absent when the runtime does not say (older agents, the simulated runtime). At most <see cref="MaxSessionLimitsLength"/> characters.
    /// </summary>
    public string? SessionLimits { get; init; }
    public const int MaxSessionLimitsLength = 300;
    /// <summary>Every session the agent has right now (invariant 4: the agent owns reality).</summary>
    public IReadOnlyList<SessionInventoryItem> Inventory { get; init; } = [];
}

public sealed record AgentCapacity
{
    public int MaxSessions { get; init; }
    public int ActiveSessions { get; init; }
}

/// <summary>One session as the agent sees it.</summary>
public sealed record SessionInventoryItem
{
    public required string SessionId { get; init; }
    /// <summary>One of <see cref="ObservedStates"/>.</summary>
    public required string State { get; init; }
    /// <summary>
    /// Why an ended session (<c>exited</c>, <c>crashed</c>, <c>stopped</c>) ended, as its <c>session.status</c> said
    /// ("app killed by signal 15"); absent for live sessions and from older agents. At most
    /// <see cref="MaxReasonLength"/> characters: what the control plane keeps of a reason, and what keeps a hello listing
    /// many crashes (each reason quoting a log the session user writes) far below <see cref="ProtocolJson.MaxFrameBytes"/>.
    /// </summary>
    public string? Reason { get; init; }

    /// <summary>Longest <see cref="Reason"/> an agent sends (the control plane's <c>sessions.reason</c> keeps 1000).</summary>
    public const int MaxReasonLength = 1000;
}

/// <summary>Session states as observed by an agent.</summary>
public static class ObservedStates
{
    public const string Starting = "starting";
    public const string Running = "running";
    public const string Hibernated = "hibernated";
    /// <summary>The session's app ended by itself (normal exit).</summary>
    public const string Exited = "exited";
    /// <summary>The session died abnormally (Xvnc or app crashed, killed).</summary>
    public const string Crashed = "crashed";
    public const string Stopped = "stopped";

    /// <summary>
    /// Every state an agent may report, in a hello's inventory or a <c>session.status</c>. Any other is malformed: a
    /// control plane that skipped it would take a live session for one the agent no longer has.
    /// </summary>
    public static readonly IReadOnlyList<string> All = [Starting, Running, Hibernated, Exited, Crashed, Stopped];
}

public sealed record WelcomePayload
{
    public int HeartbeatIntervalSeconds { get; init; }
    public int AcceptedVersion { get; init; } = ProtocolVersion.Current;
    /// <summary>Identifies this connection (epoch) on the control plane; logged by the agent.</summary>
    public required string ConnectionId { get; init; }
}

public sealed record RefusedPayload
{
    public required string Code { get; init; }
    public required string Reason { get; init; }
}

public sealed record HeartbeatPayload
{
    public int ActiveSessions { get; init; }
    public int MaxSessions { get; init; }
    public bool Draining { get; init; }
}
