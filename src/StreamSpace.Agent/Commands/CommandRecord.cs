using StreamSpace.Protocol;

namespace StreamSpace.Agent.Commands;

/// <summary>One command as the dedupe store remembers it: received (running) or finished with its result.</summary>
internal sealed record CommandRecord
{
    public required string CommandId { get; init; }
    public required string Type { get; init; }
    public string? SessionId { get; init; }
    public DateTimeOffset ReceivedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Null while the command runs.</summary>
    public ResultPayload? Result { get; init; }
}
