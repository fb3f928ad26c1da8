using System.Net;
using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>
/// An echo server standing in for a session's VNC endpoint, on loopback TCP (what direct TCP connects to) and on a
/// Unix socket, which is how the process runtime's Xvnc listens (<c>-rfbunixpath</c>) and how the agent reaches it.
/// </summary>
internal sealed class EchoServer : IAsyncDisposable
{
    private readonly Socket _tcp = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly Socket _unix = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _accepting = [];

    public int Port => ((IPEndPoint)_tcp.LocalEndPoint!).Port;

    /// <summary>The Unix socket's path: the same echo, reached the way the agent reaches a session's Xvnc.</summary>
    public string UnixPath { get; } = Path.Combine(Path.GetTempPath(), $"streamspace-bench-echo-{Environment.ProcessId}.sock");

    public static EchoServer Start()
    {
        var server = new EchoServer();
        server._tcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        File.Delete(server.UnixPath);
        server._unix.Bind(new UnixDomainSocketEndPoint(server.UnixPath));
        foreach (var listener in new[] { server._tcp, server._unix })
        {
            listener.Listen(100);
            server._accepting.Add(SocketPump.AcceptAsync(listener, async socket =>
            {
                using (socket) await SocketPump.CopyAsync(socket, socket, server._stop.Token);
            }, server._stop.Token));
        }
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _tcp.Dispose();
        _unix.Dispose();
        await Task.WhenAll(_accepting);
        File.Delete(UnixPath);
        _stop.Dispose();
    }
}
