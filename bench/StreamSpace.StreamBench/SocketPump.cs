using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>The bench's own plain-socket servers (the echo, the 3-hop floor's forwarders): accept, then copy bytes.</summary>
internal static class SocketPump
{
    /// <summary>Accepts until <paramref name="ct"/> fires or the listener is closed; each connection runs <paramref name="handle"/> on its own.</summary>
    public static async Task AcceptAsync(Socket listener, Func<Socket, Task> handle, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await listener.AcceptAsync(ct); }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            if (socket.AddressFamily != AddressFamily.Unix) socket.NoDelay = true;
            _ = Task.Run(() => handle(socket), CancellationToken.None);
        }
    }

    /// <summary>Copies until either side ends (<paramref name="from"/> == <paramref name="to"/> is an echo).</summary>
    public static async Task CopyAsync(Socket from, Socket to, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, ct);
                if (n == 0) return;
                for (var sent = 0; sent < n;) sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, ct);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Either side went away; the benchmark is over.
        }
    }
}

/// <summary>
/// A set of listening sockets, each serving its connections with <see cref="SocketPump.AcceptAsync"/> until disposed:
/// what the echo server and the forwarder chain have in common.
/// </summary>
internal abstract class SocketServers : IAsyncDisposable
{
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _accepting = [];
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Fires when the servers are disposed; connections end with it.</summary>
    protected CancellationToken Stopping => _stop.Token;

    /// <summary>A socket bound to <paramref name="endpoint"/> and listening (not serving yet, see <see cref="Serve"/>).</summary>
    protected Socket Listen(System.Net.EndPoint endpoint)
    {
        var listener = StreamSocketFor(endpoint);
        _listeners.Add(listener);
        listener.Bind(endpoint);
        listener.Listen(100);
        return listener;
    }

    /// <summary>A stream socket of <paramref name="endpoint"/>'s family (TCP, or a Unix socket).</summary>
    protected static Socket StreamSocketFor(System.Net.EndPoint endpoint) =>
        new(endpoint.AddressFamily, SocketType.Stream, endpoint.AddressFamily == AddressFamily.Unix ? ProtocolType.Unspecified : ProtocolType.Tcp);

    protected void Serve(Socket listener, Func<Socket, Task> handle) => _accepting.Add(SocketPump.AcceptAsync(listener, handle, _stop.Token));

    public virtual async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var listener in _listeners) listener.Dispose();
        await Task.WhenAll(_accepting);
        _stop.Dispose();
    }
}
