using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Asks a session's agent to dial a data socket back for a stream. Production: a durable
/// <c>stream.open</c> command (<see cref="CommandStreamOpener"/>). Tests replace it to play the agent side
/// in-process without an agent hub.
/// </summary>
public interface IStreamOpener
{
    Task OpenAsync(string agentId, string sessionId, StreamOpenArgs args, CancellationToken ct);
}
