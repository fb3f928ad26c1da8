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
