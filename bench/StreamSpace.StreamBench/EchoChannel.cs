using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;

namespace StreamSpace.StreamBench;

/// <summary>One client connection to the echo endpoint, whatever carries it (plain TCP or a WebSocket in front of it).</summary>
internal abstract class EchoChannel : IAsyncDisposable
{
    public abstract ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct);

    /// <summary>Bytes received (message boundaries mean nothing to an echo); throws when the far side closes.</summary>
    public abstract ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken ct);

    public abstract ValueTask DisposeAsync();

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes.</summary>
    public async ValueTask ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken ct)
    {
        for (var filled = 0; filled < buffer.Length;) filled += await ReceiveAsync(buffer[filled..], ct);
    }
}

internal sealed class TcpEchoChannel(Socket socket) : EchoChannel
{
    /// <summary>A client connection (Nagle off, as a viewer's input would be sent) to a path's TCP entry.</summary>
    public static async Task<EchoChannel> ConnectAsync(IPEndPoint endpoint, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint, ct);
        return new TcpEchoChannel(socket);
    }

    public override async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        for (var sent = 0; sent < data.Length;) sent += await socket.SendAsync(data[sent..], SocketFlags.None, ct);
    }

    public override async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
    {
        var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
        return n > 0 ? n : throw new InvalidOperationException("the echo server closed the connection");
    }

    public override ValueTask DisposeAsync()
    {
        socket.Dispose();
        return ValueTask.CompletedTask;
    }
}

internal sealed class WebSocketEchoChannel(ClientWebSocket socket) : EchoChannel
{
    public override ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct) =>
        socket.SendAsync(data, WebSocketMessageType.Binary, endOfMessage: true, ct);

    public override async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken ct)
    {
        var r = await socket.ReceiveAsync(buffer, ct);
        return r.MessageType == WebSocketMessageType.Close
            ? throw new InvalidOperationException($"closed early: {socket.CloseStatus} {socket.CloseStatusDescription}")
            : r.Count;
    }

    public override async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            // Closing is best effort; the measurement is over.
        }
        socket.Dispose();
    }
}
