namespace StreamSpace.Protocol;

/// <summary>How long agents remember commands (docs/protocol.md, "Delivery, dedupe and redelivery rules").</summary>
public static class CommandRecords
{
    /// <summary>
    /// Every agent keeps a finished command's record at least this long after it finished. The control plane redelivers
    /// a command only until it expires, so a command TTL of at most this never reaches an agent that has forgotten the
    /// command: a redelivery gets the stored result and nothing runs twice (invariant 2).
    /// </summary>
    public static readonly TimeSpan MinRetention = TimeSpan.FromHours(24);
}
