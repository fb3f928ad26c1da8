using System.Net;
using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>
/// The floor of our path's shape: plain socket forwarders in the places of the control plane and the agent
/// (client → TCP → forwarder → TCP → forwarder → Unix socket → echo), copying bytes with no WebSocket framing, no
/// tickets and no HTTP. Whatever this costs per round trip on a machine, any relay with the architecture's hops
/// (browser → control plane → agent → session) costs at least that much there; printed as "3-hop floor".
/// </summary>
internal sealed class ForwarderChain : IAsyncDisposable
{
    private readonly Socket _first = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly Socket _second = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _accepting = [];

    public static ForwarderChain Start(string echoUnixPath)
    {
        var chain = new ForwarderChain();
        foreach (var listener in new[] { chain._first, chain._second })
        {
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(100);
        }
        var secondPort = ((IPEndPoint)chain._second.LocalEndPoint!).Port;
        chain._accepting.Add(chain.ForwardAsync(chain._first, async ct =>
        {
            var next = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await next.ConnectAsync(new IPEndPoint(IPAddress.Loopback, secondPort), ct);
            return next;
        }));
        chain._accepting.Add(chain.ForwardAsync(chain._second, async ct =>
        {
            var next = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await next.ConnectAsync(new UnixDomainSocketEndPoint(echoUnixPath), ct);
            return next;
        }));
        return chain;
    }

    public async Task<EchoChannel> ConnectAsync(CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync((IPEndPoint)_first.LocalEndPoint!, ct);
        return new TcpEchoChannel(socket);
    }

    /// <summary>Each accepted connection is forwarded both ways to a new connection from <paramref name="connectNext"/>.</summary>
    private Task ForwardAsync(Socket listener, Func<CancellationToken, Task<Socket>> connectNext) =>
        SocketPump.AcceptAsync(listener, async inbound =>
        {
            using (inbound)
            using (var outbound = await connectNext(_stop.Token))
            {
                await Task.WhenAny(SocketPump.CopyAsync(inbound, outbound, _stop.Token), SocketPump.CopyAsync(outbound, inbound, _stop.Token));
            }
        }, _stop.Token);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _first.Dispose();
        _second.Dispose();
        await Task.WhenAll(_accepting);
        _stop.Dispose();
    }
}
