using System.Net;
using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>A loopback TCP echo server standing in for a session's VNC endpoint.</summary>
internal sealed class EchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private Task _accepting = Task.CompletedTask;

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public static EchoServer Start()
    {
        var server = new EchoServer();
        server._listener.Start(100);
        server._accepting = server.AcceptAsync();
        return server;
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (OperationCanceledException) { return; }
            catch (SocketException) { return; }
            socket.NoDelay = true;
            _ = Task.Run(async () =>
            {
                using (socket)
                {
                    var buffer = new byte[64 * 1024];
                    try
                    {
                        while (true)
                        {
                            var n = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, _stop.Token);
                            if (n == 0) return;
                            await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                        }
                    }
                    catch (Exception ex) when (ex is SocketException or OperationCanceledException)
                    {
                        // The client went away.
                    }
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }
}
