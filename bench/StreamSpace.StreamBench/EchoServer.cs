using System.Net;
using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>
/// An echo server standing in for a session's VNC endpoint, on loopback TCP (what direct TCP connects to) and on a
/// Unix socket, which is how the process runtime's Xvnc listens (<c>-rfbunixpath</c>) and how the agent reaches it.
/// </summary>
internal sealed class EchoServer : SocketServers
{
    private Socket _tcp = null!;

    public int Port => ((IPEndPoint)_tcp.LocalEndPoint!).Port;

    /// <summary>The Unix socket's path: the same echo, reached the way the agent reaches a session's Xvnc.</summary>
    public string UnixPath { get; } = Path.Combine(Path.GetTempPath(), $"streamspace-bench-echo-{Environment.ProcessId}.sock");

    public static EchoServer Start()
    {
        var server = new EchoServer();
        File.Delete(server.UnixPath);
        server._tcp = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        foreach (var listener in new[] { server._tcp, server.Listen(new UnixDomainSocketEndPoint(server.UnixPath)) })
        {
            server.Serve(listener, async socket =>
            {
                using (socket) await SocketPump.CopyAsync(socket, socket, server.Stopping);
            });
        }
        return server;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        File.Delete(UnixPath);
    }
}
