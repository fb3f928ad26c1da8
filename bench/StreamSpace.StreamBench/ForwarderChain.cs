using System.Net;
using System.Net.Sockets;

namespace StreamSpace.StreamBench;

/// <summary>
/// The floor of our path's shape: plain socket forwarders in the places of the control plane and the agent
/// (client → TCP → forwarder → TCP → forwarder → Unix socket → echo), copying bytes with no WebSocket framing, no
/// tickets and no HTTP. Whatever this costs per round trip on a machine, any relay with the architecture's hops
/// (browser → control plane → agent → session) costs at least that much there; printed as "3-hop floor".
/// </summary>
internal sealed class ForwarderChain : SocketServers
{
    private Socket _first = null!;

    public static ForwarderChain Start(string echoUnixPath)
    {
        var chain = new ForwarderChain();
        chain._first = chain.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var second = chain.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        chain.Forward(chain._first, second.LocalEndPoint!);
        chain.Forward(second, new UnixDomainSocketEndPoint(echoUnixPath));
        return chain;
    }

    public Task<EchoChannel> ConnectAsync(CancellationToken ct) => TcpEchoChannel.ConnectAsync((IPEndPoint)_first.LocalEndPoint!, ct);

    /// <summary>Each connection accepted on <paramref name="listener"/> is forwarded both ways to a new connection to <paramref name="next"/>.</summary>
    private void Forward(Socket listener, EndPoint next) =>
        Serve(listener, async inbound =>
        {
            using (inbound)
            using (var outbound = StreamSocketFor(next))
            {
                if (outbound.AddressFamily != AddressFamily.Unix) outbound.NoDelay = true;
                await outbound.ConnectAsync(next, Stopping);
                await Task.WhenAny(SocketPump.CopyAsync(inbound, outbound, Stopping), SocketPump.CopyAsync(outbound, inbound, Stopping));
            }
        });
}
