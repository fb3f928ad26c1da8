namespace StreamSpace.Agent.Connection;

/// <summary>
/// The control plane's clock as this agent sees it: the <c>ts</c> of the connection's <c>welcome</c>, then this host's
/// monotonic time since. A command's <c>expiresAt</c> (control-plane time) becomes a moment on this host without the
/// two hosts' clocks having to agree, and a change of this host's wall clock moves nothing. The welcome's time of flight
/// makes deadlines later by that much, never earlier.
/// </summary>
internal sealed class ControlPlaneClock(DateTimeOffset welcomeTs, long welcomeTimestamp, TimeProvider time)
{
    /// <summary>The deadline of a command expiring at <paramref name="expiresAt"/>, or null when it never expires.</summary>
    public CommandDeadline? DeadlineOf(DateTimeOffset? expiresAt) =>
        expiresAt is { } at
            ? new CommandDeadline(at, welcomeTimestamp + (long)((at - welcomeTs).TotalSeconds * time.TimestampFrequency))
            : null;
}

/// <summary>When the control plane gives up on a command: <paramref name="ExpiresAt"/> by its clock, <paramref name="Timestamp"/> by this host's monotonic one.</summary>
internal readonly record struct CommandDeadline(DateTimeOffset ExpiresAt, long Timestamp);
