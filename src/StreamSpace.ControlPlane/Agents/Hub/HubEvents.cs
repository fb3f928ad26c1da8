namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>Log event ids of the agent hub, so operators can alert and filter on them.</summary>
internal static class HubEvents
{
    public static readonly EventId AgentAuthFailed = new(3001, nameof(AgentAuthFailed));
    public static readonly EventId AgentConnected = new(3002, nameof(AgentConnected));
    public static readonly EventId AgentDisconnected = new(3003, nameof(AgentDisconnected));
    public static readonly EventId AgentReplaced = new(3004, nameof(AgentReplaced));
    public static readonly EventId AgentTimedOut = new(3005, nameof(AgentTimedOut));
    public static readonly EventId HandshakeRefused = new(3006, nameof(HandshakeRefused));
    public static readonly EventId ProtocolViolation = new(3007, nameof(ProtocolViolation));
    public static readonly EventId UnknownMessageType = new(3008, nameof(UnknownMessageType));
    public static readonly EventId StaleAgentsSwept = new(3009, nameof(StaleAgentsSwept));
    public static readonly EventId AgentRowGone = new(3010, nameof(AgentRowGone));
    public static readonly EventId AgentTokenRotated = new(3011, nameof(AgentTokenRotated));
    public static readonly EventId RegionMismatch = new(3012, nameof(RegionMismatch));
    public static readonly EventId StaleSweepWaits = new(3013, nameof(StaleSweepWaits));
    public static readonly EventId CommandSent = new(3020, nameof(CommandSent));
    public static readonly EventId CommandExpired = new(3021, nameof(CommandExpired));
    public static readonly EventId CommandResultIgnored = new(3022, nameof(CommandResultIgnored));
    public static readonly EventId CommandCompleted = new(3023, nameof(CommandCompleted));
    public static readonly EventId CommandsPruned = new(3024, nameof(CommandsPruned));
    public static readonly EventId SessionsPruned = new(3025, nameof(SessionsPruned));
    public static readonly EventId SessionObserved = new(3030, nameof(SessionObserved));
    public static readonly EventId Reconciled = new(3031, nameof(Reconciled));
    public static readonly EventId HubLoopFailed = new(3040, nameof(HubLoopFailed));
}
