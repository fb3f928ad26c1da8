using System.Net;
using System.Net.Sockets;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>
/// A loopback TCP proxy for fault injection: forwards 127.0.0.1:<see cref="Port"/> to a target.
/// <see cref="Cut"/> resets every open connection and stops listening, so new connections are refused,
/// exactly as if the server went away; <see cref="Restore"/> listens on the same port again. <see cref="BlackHole"/>
/// drops every byte from then on while keeping both sockets open: a peer that vanished without a FIN or RST.
/// </summary>
public sealed class TcpProxy : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly Lock _gate = new();
    private readonly HashSet<TcpClient> _open = [];
    private readonly CancellationTokenSource _disposed = new();
    private TcpListener? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    public TcpProxy(string targetHost, int targetPort)
    {
        _target = new IPEndPoint(IPAddress.Parse(targetHost == "localhost" ? "127.0.0.1" : targetHost), targetPort);
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Restore();
    }

    public int Port { get; }
    public bool IsCut { get; private set; }
    private volatile bool _blackHoled;

    /// <summary>From now on, bytes in either direction are read and dropped; no connection is closed.</summary>
    public void BlackHole() => _blackHoled = true;

    /// <summary>Resets all open connections and refuses new ones until <see cref="Restore"/>.</summary>
    public void Cut()
    {
        TcpClient[] open;
        lock (_gate)
        {
            IsCut = true;
            _listener?.Stop();
            _listener = null;
            open = [.. _open];
            _open.Clear();
        }
        foreach (var c in open)
        {
            // Linger 0 sends RST: the peer sees a dead connection, not a graceful end.
            // Client is null once the pipe itself disposed this end concurrently.
            try { c.Client?.LingerState = new LingerOption(true, 0); } catch (ObjectDisposedException) { } catch (SocketException) { }
            c.Dispose();
        }
    }

    public void Restore()
    {
        lock (_gate)
        {
            if (_listener is not null) return;
            var listener = new TcpListener(IPAddress.Loopback, Port);
            listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Start();
            _listener = listener;
            IsCut = false;
            _acceptLoop = AcceptLoopAsync(listener);
        }
    }

    private async Task AcceptLoopAsync(TcpListener listener)
    {
        while (!_disposed.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await listener.AcceptTcpClientAsync(_disposed.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                return; // stopped by Cut or DisposeAsync
            }
            _ = PipeAsync(inbound);
        }
    }

    private async Task PipeAsync(TcpClient inbound)
    {
        var outbound = new TcpClient();
        try
        {
            await outbound.ConnectAsync(_target, _disposed.Token);
            lock (_gate)
            {
                if (IsCut) throw new SocketException((int)SocketError.ConnectionReset);
                _open.Add(inbound);
                _open.Add(outbound);
            }
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token);
            var up = CopyAsync(inbound, outbound, stop.Token);
            var down = CopyAsync(outbound, inbound, stop.Token);
            await Task.WhenAny(up, down);
            await stop.CancelAsync();
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // A cut or a closed end: both sides are closed below.
        }
        finally
        {
            lock (_gate)
            {
                _open.Remove(inbound);
                _open.Remove(outbound);
            }
            inbound.Dispose();
            outbound.Dispose();
        }
    }

    private async Task CopyAsync(TcpClient from, TcpClient to, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            var input = from.GetStream();
            var output = to.GetStream();
            int read;
            while ((read = await input.ReadAsync(buffer, ct)) > 0)
                if (!_blackHoled) await output.WriteAsync(buffer.AsMemory(0, read), ct);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            // Either side went away; the pipe ends.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _disposed.CancelAsync();
        Cut();
        try { await _acceptLoop; } catch (OperationCanceledException) { }
        _disposed.Dispose();
    }
}
