using System.Net;
using System.Net.Sockets;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>Loopback TCP servers standing in for a session's VNC endpoint behind the real StreamBridge.</summary>
public sealed class StreamingTestServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<Socket, CancellationToken, Task> _serve;
    private readonly Task _accepting;
    private int _open;
    private int _served;

    private StreamingTestServer(Func<Socket, CancellationToken, Task> serve)
    {
        _serve = serve;
        _listener.Start(200);
        _accepting = AcceptAsync();
    }

    /// <summary>Echoes every byte back until the client closes, then closes.</summary>
    public static StreamingTestServer Echo() => new(async (socket, ct) =>
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, ct);
            if (n == 0) break;
            await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, ct);
        }
    });

    /// <summary>Writes an endless byte pattern (a busy desktop) until the client goes away.</summary>
    public static StreamingTestServer Source() => new(async (socket, ct) =>
    {
        var buffer = new byte[64 * 1024];
        new Random(7).NextBytes(buffer);
        while (true) await socket.SendAsync(buffer.AsMemory(), SocketFlags.None, ct);
    });

    /// <summary>
    /// An RFB 3.8 server that offers security type None and then fails the security result with <paramref name="reason"/>
    /// (what noVNC reports as a security failure), then waits for the client to hang up.
    /// </summary>
    public static StreamingTestServer RefusingRfb(string reason) => new(async (socket, ct) =>
    {
        await socket.SendAsync("RFB 003.008\n"u8.ToArray(), SocketFlags.None, ct);
        var buffer = new byte[64];
        for (var got = 0; got < 12;) got += Received(await socket.ReceiveAsync(buffer.AsMemory(got, 12 - got), SocketFlags.None, ct));
        await socket.SendAsync(new byte[] { 1, 1 }, SocketFlags.None, ct); // one security type: None
        Received(await socket.ReceiveAsync(buffer.AsMemory(0, 1), SocketFlags.None, ct));
        var text = System.Text.Encoding.UTF8.GetBytes(reason);
        var result = new byte[8 + text.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(result, 1); // failed
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(4), (uint)text.Length);
        text.CopyTo(result, 8);
        await socket.SendAsync(result, SocketFlags.None, ct);
        while (await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, ct) > 0) { }

        static int Received(int n) => n > 0 ? n : throw new IOException("the client hung up during the handshake");
    });

    public int OpenConnections => Volatile.Read(ref _open);
    public int ServedConnections => Volatile.Read(ref _served);

    public Task<Stream> ConnectAsync(CancellationToken ct) => ConnectCoreAsync(ct);

    private async Task<Stream> ConnectCoreAsync(CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync((IPEndPoint)_listener.LocalEndpoint, ct);
        return new NetworkStream(socket, ownsSocket: true);
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception) { return; }
            socket.NoDelay = true;
            Interlocked.Increment(ref _open);
            Interlocked.Increment(ref _served);
            _ = Task.Run(async () =>
            {
                try { await _serve(socket, _stop.Token); }
                catch (Exception) { /* the client went away */ }
                finally
                {
                    socket.Dispose();
                    Interlocked.Decrement(ref _open);
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try { await _accepting; } catch (Exception) { }
        _stop.Dispose();
    }
}
