using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// The control plane's listening sockets, opened as the process starts instead of when Kestrel starts, which is
/// after the database is reachable and the schema current (<see cref="StartupInitializer"/>): 1.6–2 s on an idle
/// machine, several seconds on a restart under thousands of reconnecting agents. Until Kestrel listens, every agent's
/// attempt is refused and it backs off (0.5 s doubling, full jitter), so agents come back long after the control
/// plane could take them. A socket that already listens lets the kernel complete their connections and hold them in
/// its accept queue (<see cref="AcceptBacklog"/>) until Kestrel, handed the very same socket
/// (<see cref="SocketTransportOptions.CreateBoundListenSocket"/>), starts accepting: they wait instead of backing off.
/// </summary>
/// <remarks>
/// Only addresses given as IP literals with a fixed port are opened early (<c>http://127.0.0.1:8000</c>,
/// <c>http://0.0.0.0:8000</c>, <c>http://[::]:8000</c>); a host name (<c>localhost</c>, <c>*</c>) or port 0 is bound by
/// Kestrel as usual, and so is any address that cannot be bound here for another reason than being in use (Kestrel
/// then reports the error as it always did). An address in use ends the start at once with <see cref="ListenAddressInUseException"/>.
/// </remarks>
public sealed class EarlyListeners : IDisposable
{
    /// <summary>
    /// Connections the kernel completes and holds for Kestrel (Kestrel's default is 512; the kernel caps it at
    /// <c>net.core.somaxconn</c>, 4 096 by default): a reconnect storm of thousands of agents fits, not 512 of them.
    /// </summary>
    public const int AcceptBacklog = 4096;

    private readonly ConcurrentDictionary<EndPoint, Socket> _sockets = new();

    private EarlyListeners()
    {
    }

    /// <summary>The endpoints listened on ahead of Kestrel and not yet taken by it.</summary>
    public IReadOnlyCollection<EndPoint> Pending => [.. _sockets.Keys];

    /// <summary>Opens and listens on every IP-literal, fixed-port address of <paramref name="urls"/> (';'-separated).</summary>
    public static EarlyListeners Open(string urls)
    {
        var early = new EarlyListeners();
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Port <= 0
                || !IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address))
                continue;
            var endpoint = new IPEndPoint(address, uri.Port);
            if (early._sockets.ContainsKey(endpoint)) continue;
            Socket? socket = null;
            try
            {
                socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
                socket.Listen(AcceptBacklog);
                early._sockets[endpoint] = socket;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                // Said now, before any start-up work, rather than by Kestrel after it (and plainly: see Program.cs).
                socket?.Dispose();
                early.Dispose();
                throw new ListenAddressInUseException(url, ex);
            }
            catch (SocketException)
            {
                socket?.Dispose();
            }
        }
        return early;
    }

    /// <summary>For <see cref="SocketTransportOptions.CreateBoundListenSocket"/>: the early socket of that endpoint, or a new one.</summary>
    public Socket CreateBoundListenSocket(EndPoint endpoint) =>
        _sockets.TryRemove(endpoint, out var socket) ? socket : SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);

    /// <summary>Closes what Kestrel did not take (its configuration named other addresses): nothing listens there unserved.</summary>
    public void Dispose()
    {
        foreach (var endpoint in _sockets.Keys)
        {
            if (_sockets.TryRemove(endpoint, out var socket)) socket.Dispose();
        }
    }
}

/// <summary>A listen address is taken (another control plane, or another program, listens there).</summary>
public sealed class ListenAddressInUseException(string url, Exception? inner = null) : IOException(
    $"Cannot listen on {url}: the address is already in use (another StreamSpace control plane, or another program, listens there). " +
    "Stop it, or choose another address with STREAMSPACE_URLS.", inner)
{
    public string Url { get; } = url;
}
