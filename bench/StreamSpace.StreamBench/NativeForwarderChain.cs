using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace StreamSpace.StreamBench;

/// <summary>
/// The 3-hop floor with native forwarders (bench/native-forwarder/forwarder.c: one thread, epoll, one read and one
/// write per message and hop) as two processes of their own: client → TCP → forwarder → TCP → forwarder → Unix socket
/// → echo. It answers whether the architecture's hops can meet a latency target on the machine at hand at all, with
/// no managed runtime in the relay; printed as "native floor". Their CPU counts with the path's.
/// </summary>
internal sealed class NativeForwarderChain : IAsyncDisposable
{
    private readonly Process _first;
    private readonly Process _second;
    private readonly int _port;

    private NativeForwarderChain(Process first, Process second, int port)
    {
        _first = first;
        _second = second;
        _port = port;
    }

    /// <summary>The compiled forwarder next to the bench (bench/stream.sh builds it with cc), or null when it is not there.</summary>
    public static string? Executable()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "native-forwarder");
        return File.Exists(path) ? path : null;
    }

    public static async Task<NativeForwarderChain> StartAsync(string executable, string echoUnixPath)
    {
        var (second, secondPort) = await StartOneAsync(executable, $"unix:{echoUnixPath}");
        var (first, firstPort) = await StartOneAsync(executable, $"tcp:{secondPort}");
        return new NativeForwarderChain(first, second, firstPort);
    }

    private static async Task<(Process, int)> StartOneAsync(string executable, string target)
    {
        var process = Process.Start(new ProcessStartInfo(executable, ["0", target]) { RedirectStandardOutput = true, UseShellExecute = false })
                      ?? throw new InvalidOperationException($"{executable} did not start");
        var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10));
        if (!int.TryParse(line, NumberStyles.Integer, CultureInfo.InvariantCulture, out var port))
            throw new InvalidOperationException($"{executable} did not print its port (got '{line}')");
        return (process, port);
    }

    public Task<EchoChannel> ConnectAsync(CancellationToken ct) => TcpEchoChannel.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _port), ct);

    public TimeSpan CpuTime()
    {
        _first.Refresh();
        _second.Refresh();
        return _first.TotalProcessorTime + _second.TotalProcessorTime;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var p in new[] { _first, _second })
        {
            p.Kill();
            await p.WaitForExitAsync();
            p.Dispose();
        }
    }
}
