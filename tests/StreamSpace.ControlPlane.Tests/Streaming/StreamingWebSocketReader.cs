using System.Net.WebSockets;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>Reads a binary WebSocket as a byte stream (RFB does not care where frames end).</summary>
public sealed class StreamingWebSocketReader(WebSocket socket)
{
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    public async Task<byte[]> ReadExactAsync(int count, CancellationToken ct)
    {
        var result = new byte[count];
        var filled = 0;
        while (filled < count)
        {
            if (_start == _end)
            {
                var r = await socket.ReceiveAsync(_buffer.AsMemory(), ct);
                if (r.MessageType == WebSocketMessageType.Close)
                    throw new InvalidOperationException($"Closed after {filled}/{count} bytes: {socket.CloseStatus} {socket.CloseStatusDescription}");
                _start = 0;
                _end = r.Count;
                continue;
            }
            var n = Math.Min(count - filled, _end - _start);
            _buffer.AsSpan(_start, n).CopyTo(result.AsSpan(filled));
            _start += n;
            filled += n;
        }
        return result;
    }

    /// <summary>Skips <paramref name="count"/> bytes without keeping them.</summary>
    public async Task SkipAsync(long count, CancellationToken ct)
    {
        while (count > 0)
        {
            if (_start == _end)
            {
                var r = await socket.ReceiveAsync(_buffer.AsMemory(), ct);
                if (r.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException($"Closed with {count} bytes left to skip");
                _start = 0;
                _end = r.Count;
                continue;
            }
            var n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }
}
