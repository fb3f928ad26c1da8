using System.Buffers;
using System.Net.WebSockets;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>How reading one message from the control socket ended; expected endings are values, not exceptions.</summary>
internal enum FrameReadStatus { Text, Closed, TooLarge, Binary }

/// <summary>Reads one complete WebSocket message into a reusable buffer, refusing anything over <see cref="ProtocolJson.MaxFrameBytes"/>.</summary>
internal sealed class FrameReader : IDisposable
{
    /// <summary>
    /// Receive chunk: control messages are small (a heartbeat is ~150 bytes); big inventories simply take several reads.
    /// Kept small because every connected agent holds one, and 10 000 agents are a normal fleet.
    /// </summary>
    private const int ChunkBytes = 4 * 1024;

    private readonly ArrayBufferWriter<byte> _message = new(ChunkBytes);
    private readonly byte[] _chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);

    public ReadOnlyMemory<byte> Message => _message.WrittenMemory;

    public async Task<FrameReadStatus> ReadAsync(WebSocket socket, CancellationToken ct)
    {
        _message.ResetWrittenCount();
        while (true)
        {
            var result = await socket.ReceiveAsync(_chunk.AsMemory(), ct);
            if (result.MessageType == WebSocketMessageType.Close) return FrameReadStatus.Closed;
            if (result.MessageType == WebSocketMessageType.Binary) return FrameReadStatus.Binary;
            if (_message.WrittenCount + result.Count > ProtocolJson.MaxFrameBytes) return FrameReadStatus.TooLarge;
            _message.Write(_chunk.AsSpan(0, result.Count));
            if (result.EndOfMessage) return FrameReadStatus.Text;
        }
    }

    public void Dispose() => ArrayPool<byte>.Shared.Return(_chunk);
}
