using System.Threading.Channels;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Connection;

/// <summary>A frame waiting for the writer; <see cref="Written"/> completes once it is on the wire (or could not be).</summary>
internal sealed record OutboundFrame(Envelope Envelope, TaskCompletionSource<bool>? Written = null);

/// <summary>
/// Everything the agent sends after the handshake goes through this one queue, drained by exactly one writer
/// task per connection: frames never interleave, and nobody (reader, executor, heartbeat) ever waits on the
/// socket. It outlives connections, so results and observations produced while disconnected go out after the
/// next welcome.
/// </summary>
internal sealed class AgentOutbox
{
    private readonly Channel<OutboundFrame> _frames = Channel.CreateUnbounded<OutboundFrame>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TimeProvider _time;

    public AgentOutbox(TimeProvider time) => _time = time;

    public ChannelReader<OutboundFrame> Reader => _frames.Reader;

    public void Post<T>(string type, T payload, string? re = null) =>
        _frames.Writer.TryWrite(new OutboundFrame(Envelope.Create(type, payload, _time.GetUtcNow(), re)));

    /// <summary>Queues a frame and returns a task that completes with true once the writer has sent it.</summary>
    public Task<bool> PostAndWaitAsync<T>(string type, T payload)
    {
        var written = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _frames.Writer.TryWrite(new OutboundFrame(Envelope.Create(type, payload, _time.GetUtcNow()), written));
        return written.Task;
    }
}
