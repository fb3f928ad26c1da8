using System.Buffers;
using System.Net;
using System.Net.Sockets;

namespace StreamSpace.Agent.Tests;

/// <summary>
/// A loopback TCP proxy for fault injection: forwards 127.0.0.1:<see cref="Port"/> to a target.
/// <see cref="SilenceOpenConnections"/> makes every connection open at that moment a black hole: both sockets
/// stay open and keep being read, but nothing is forwarded any more and nothing is closed or reset, exactly like a
/// peer whose machine died or a NAT that forgot the flow. New connections are forwarded normally.
/// </summary>
internal sealed class TcpProxy : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _disposed = new();
    private readonly Lock _gate = new();
    private readonly List<Pipe> _open = [];
    private readonly Task _acceptLoop;

    public TcpProxy(Uri target)
    {
        _target = new IPEndPoint(IPAddress.Parse(target.Host == "localhost" ? "127.0.0.1" : target.Host), target.Port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync();
    }

    public int Port { get; }

    /// <summary>The proxy's address with the target's scheme, for a client to dial instead of the target.</summary>
    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Connections accepted so far.</summary>
    public int Accepted { get; private set; }

    /// <summary>From now on, bytes on every open connection are read and dropped in both directions.</summary>
    public void SilenceOpenConnections()
    {
        lock (_gate)
        {
            foreach (var pipe in _open) pipe.Silenced = true;
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_disposed.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_disposed.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            lock (_gate) Accepted++;
            _ = PipeAsync(inbound);
        }
    }

    private async Task PipeAsync(TcpClient inbound)
    {
        using var outbound = new TcpClient();
        using var _ = inbound;
        var pipe = new Pipe();
        try
        {
            await outbound.ConnectAsync(_target, _disposed.Token);
            lock (_gate) _open.Add(pipe);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token);
            var up = CopyAsync(inbound, outbound, pipe, stop.Token);
            var down = CopyAsync(outbound, inbound, pipe, stop.Token);
            await Task.WhenAny(up, down);
            await stop.CancelAsync();
            await Task.WhenAll(up, down);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The target refused or the proxy is disposed: both ends are closed below.
        }
        finally
        {
            lock (_gate) _open.Remove(pipe);
        }
    }

    private static async Task CopyAsync(TcpClient from, TcpClient to, Pipe pipe, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            var source = from.GetStream();
            var sink = to.GetStream();
            while (true)
            {
                var read = await source.ReadAsync(buffer, ct);
                if (read == 0) return;
                // A silenced pipe keeps reading, so the sender's window never fills and nothing tells it the bytes are lost.
                if (!pipe.Silenced) await sink.WriteAsync(buffer.AsMemory(0, read), ct);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            // Either side went away or the proxy is disposed; the pipe ends.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _disposed.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        _disposed.Dispose();
    }

    private sealed class Pipe
    {
        private volatile bool _silenced;

        public bool Silenced
        {
            get => _silenced;
            set => _silenced = value;
        }
    }
}
