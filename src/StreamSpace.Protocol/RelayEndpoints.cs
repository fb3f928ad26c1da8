using System.Net.WebSockets;
using System.Runtime.CompilerServices;

namespace StreamSpace.Protocol;

/// <summary>
/// What one read of a relay input produced: <see cref="Count"/> bytes of a message of <see cref="Type"/>
/// (which ends with this chunk when <see cref="EndOfMessage"/>), or the end of the input.
/// </summary>
internal readonly record struct RelayChunk(int Count, WebSocketMessageType Type, bool EndOfMessage, bool Ended)
{
    public static readonly RelayChunk End = new(0, WebSocketMessageType.Close, true, Ended: true);
    /// <summary>The input has data, but none was taken yet: read it into a buffer.</summary>
    public static readonly RelayChunk Pending = new(0, WebSocketMessageType.Binary, false, Ended: false);
}

/// <summary>
/// One side the relay reads from. Structs, so the generic copy loop calls them without virtual dispatch; their
/// async methods use the pooling builder, because a wait that does not complete at once (most of them, on an
/// interactive stream) would otherwise box a new state machine per message (seen in the bench's allocation ticks).
/// </summary>
internal interface IRelayInput
{
    /// <summary>
    /// Waits for input without a buffer (a zero-byte read). Returns <see cref="RelayChunk.Pending"/> when
    /// data is waiting, or a complete chunk when the wait alone finished something (a close, an empty message).
    /// </summary>
    ValueTask<RelayChunk> WaitAsync(CancellationToken ct);

    ValueTask<RelayChunk> ReadAsync(Memory<byte> buffer, CancellationToken ct);
}

/// <summary>One side the relay writes to.</summary>
internal interface IRelayOutput
{
    ValueTask WriteAsync(ReadOnlyMemory<byte> data, RelayChunk chunk, CancellationToken ct);
}

/// <summary>Reads WebSocket messages; a message may arrive in several chunks, its boundaries are kept.</summary>
internal readonly struct WebSocketRelayInput(WebSocket socket) : IRelayInput
{
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<RelayChunk> WaitAsync(CancellationToken ct)
    {
        var peek = await socket.ReceiveAsync(Memory<byte>.Empty, ct);
        if (peek.MessageType == WebSocketMessageType.Close) return RelayChunk.End;
        // An empty message (or the empty last frame of a fragmented one) is complete without a buffer.
        return peek.EndOfMessage ? new RelayChunk(0, peek.MessageType, true, Ended: false) : RelayChunk.Pending;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<RelayChunk> ReadAsync(Memory<byte> buffer, CancellationToken ct)
    {
        var received = await socket.ReceiveAsync(buffer, ct);
        return received.MessageType == WebSocketMessageType.Close
            ? RelayChunk.End
            : new RelayChunk(received.Count, received.MessageType, received.EndOfMessage, Ended: false);
    }
}

/// <summary>Writes each chunk as (part of) a WebSocket message, keeping the input's message type and boundaries.</summary>
internal readonly struct WebSocketRelayOutput(WebSocket socket) : IRelayOutput
{
    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, RelayChunk chunk, CancellationToken ct) =>
        socket.SendAsync(data, chunk.Type, chunk.EndOfMessage, ct);
}

/// <summary>Reads a byte stream (a TCP connection to a VNC server); every read is one complete binary chunk.</summary>
internal readonly struct StreamRelayInput(Stream stream) : IRelayInput
{
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<RelayChunk> WaitAsync(CancellationToken ct)
    {
        // Sockets complete a zero-byte read when data arrives; streams that do not support it complete at
        // once, and the real read that follows still behaves. End of stream shows in that read.
        _ = await stream.ReadAsync(Memory<byte>.Empty, ct);
        return RelayChunk.Pending;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<RelayChunk> ReadAsync(Memory<byte> buffer, CancellationToken ct)
    {
        var read = await stream.ReadAsync(buffer, ct);
        return read == 0 ? RelayChunk.End : new RelayChunk(read, WebSocketMessageType.Binary, true, Ended: false);
    }
}

/// <summary>Writes the chunks' bytes to a byte stream; WebSocket message boundaries mean nothing to RFB over TCP.</summary>
internal readonly struct StreamRelayOutput(Stream stream) : IRelayOutput
{
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, RelayChunk chunk, CancellationToken ct)
    {
        if (data.IsEmpty) return;
        await stream.WriteAsync(data, ct);
        await stream.FlushAsync(ct);
    }
}
