using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using Dapper;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.StreamBench;

public static class StreamBench
{
    private const int ChunkBytes = 64 * 1024;
    private const int PingBytes = 64;
    private const string AdminPassword = "bench-admin-password-1";

    /// <summary>USER_HZ of /proc/*/stat times: 100 on every Linux architecture .NET runs on.</summary>
    private const int ClockTicksPerSecond = 100;

    public static async Task<int> MainAsync(string[] args)
    {
        var mib = IntArg(args, "--mib", 128);
        var pings = IntArg(args, "--pings", 2000);
        var streamCounts = (StringArg(args, "--streams") ?? "1,10,100").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        // --only ours: just our path, for profiling (perf/strace) without the baselines; no ratios then.
        var only = StringArg(args, "--only");
        if (mib < 1 || pings < 100 || streamCounts.Any(n => n < 1))
        {
            Console.Error.WriteLine("usage: StreamBench [--mib N>=1 per measurement] [--pings N>=100 round trips per measurement] [--streams 1,10,100]");
            return 2;
        }
        await using var echo = EchoServer.Start();
        Console.WriteLine($"echo server on loopback; throughput: {mib} MiB echoed per measurement in {ChunkBytes / 1024} KiB messages, " +
                          $"split over the streams; latency: {pings} round trips of {PingBytes} bytes per measurement, split over the streams");
        Console.WriteLine($"{Environment.ProcessorCount} CPU(s); all clients, the relay and the in-process agent bridge share them");
        Console.WriteLine();

        var results = new List<Row>();
        if (only is null)
        {
            results.AddRange(await MeasureAsync("direct TCP", ct => DirectAsync(echo.Port, ct), null, streamCounts, mib, pings));
            await using var websockify = await Websockify.StartAsync(echo.Port);
            results.AddRange(await MeasureAsync("websockify", websockify.ConnectAsync, websockify.CpuTime, streamCounts, mib, pings));
        }
        await using (var ours = await OurRelay.StartAsync(echo.Port))
            results.AddRange(await MeasureAsync("StreamSpace", ours.ConnectAsync, null, streamCounts, mib, pings));
        if (only is not null) return 0;

        Console.WriteLine();
        Console.WriteLine($"{"path",-12} {"streams",7} {"MiB/s",9} {"p50 µs",9} {"p99 µs",9} {"CPU ms/MiB",11} {"KiB/recv",9}");
        foreach (var r in results)
            Console.WriteLine($"{r.Path,-12} {r.Streams,7} {r.MiBps,9:F1} {r.P50Us,9:F0} {r.P99Us,9:F0} {r.CpuMsPerMiB,11:F2} {r.KiBPerReceive,9:F1}");
        Console.WriteLine();
        Console.WriteLine($"{"streams",7} {"ours/websockify MiB/s",22} {"(target >= 1.0)",16} {"ours added p50 µs",18} {"(target < 1000)",16} {"websockify added p50 µs",24}");
        foreach (var n in streamCounts)
        {
            var direct = results.Single(r => r.Path == "direct TCP" && r.Streams == n);
            var ws = results.Single(r => r.Path == "websockify" && r.Streams == n);
            var ours = results.Single(r => r.Path == "StreamSpace" && r.Streams == n);
            var ratio = ours.MiBps / ws.MiBps;
            var added = ours.P50Us - direct.P50Us;
            Console.WriteLine($"{n,7} {ratio,22:F2} {(ratio >= 1.0 ? "met" : "MISSED"),16} {added,18:F0} {(added < 1000 ? "met" : "MISSED"),16} {ws.P50Us - direct.P50Us,24:F0}");
        }
        return 0;
    }

    /// <param name="CpuMsPerMiB">CPU time (this process: clients, echo server, and for ours the relay and bridge; plus
    /// websockify's processes) per MiB echoed in the throughput phase: efficiency, independent of the machine's other load.</param>
    /// <param name="KiBPerReceive">Average bytes a client receive returned: how finely the path fragments 64 KiB messages.</param>
    private sealed record Row(string Path, int Streams, double MiBps, double P50Us, double P99Us, double CpuMsPerMiB, double KiBPerReceive);

    private static async Task<IReadOnlyList<Row>> MeasureAsync(
        string path, Func<CancellationToken, Task<EchoChannel>> connect, Func<TimeSpan>? externalCpu, int[] streamCounts, int mib, int pings)
    {
        var rows = new List<Row>();
        foreach (var n in streamCounts)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var channels = new List<EchoChannel>();
            try
            {
                // Connect in small batches: the relay's rendezvous is part of connecting, not of what is measured.
                foreach (var batch in Enumerable.Range(0, n).Chunk(10))
                    channels.AddRange(await Task.WhenAll(batch.Select(_ => connect(cts.Token))));
                foreach (var c in channels) await PingAsync(c, new byte[PingBytes], cts.Token); // warm up every path

                var perStream = Math.Max(10, pings / n);
                var samples = await Task.WhenAll(channels.Select(c => Task.Run(() => LatencyAsync(c, perStream, cts.Token), cts.Token)));
                var all = samples.SelectMany(s => s).Order().ToArray();
                var bytesPerStream = (long)mib * 1024 * 1024 / n;
                var cpuBefore = CpuTime(externalCpu);
                var clock = Stopwatch.StartNew();
                var receives = (await Task.WhenAll(channels.Select(c => Task.Run(() => ThroughputAsync(c, bytesPerStream, cts.Token), cts.Token)))).Sum();
                var totalMiB = n * bytesPerStream / (1024.0 * 1024.0);
                var mibps = totalMiB / clock.Elapsed.TotalSeconds;
                var cpuMsPerMiB = (CpuTime(externalCpu) - cpuBefore).TotalMilliseconds / totalMiB;
                var row = new Row(path, n, mibps, Percentile(all, 0.50), Percentile(all, 0.99), cpuMsPerMiB, n * bytesPerStream / 1024.0 / receives);
                Console.WriteLine($"{row.Path,-12} {row.Streams,4} streams: {row.MiBps,8:F1} MiB/s   p50 {row.P50Us,6:F0} µs   p99 {row.P99Us,6:F0} µs   " +
                                  $"CPU {row.CpuMsPerMiB,5:F2} ms/MiB   {row.KiBPerReceive,5:F1} KiB/receive   ({all.Length} round trips)");
                rows.Add(row);
            }
            finally
            {
                foreach (var c in channels) await c.DisposeAsync();
            }
        }
        return rows;
    }

    private static TimeSpan CpuTime(Func<TimeSpan>? external)
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime + (external?.Invoke() ?? TimeSpan.Zero);
    }

    private static async Task<double[]> LatencyAsync(EchoChannel channel, int count, CancellationToken ct)
    {
        var ping = new byte[PingBytes];
        Random.Shared.NextBytes(ping);
        var micros = new double[count];
        for (var i = 0; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await PingAsync(channel, ping, ct);
            micros[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }
        return micros;
    }

    private static async Task PingAsync(EchoChannel channel, byte[] ping, CancellationToken ct)
    {
        var back = new byte[ping.Length];
        await channel.SendAsync(ping, ct);
        await channel.ReceiveExactlyAsync(back, ct);
        if (!back.AsSpan().SequenceEqual(ping)) throw new InvalidOperationException("the echo came back different");
    }

    private static async Task<long> ThroughputAsync(EchoChannel channel, long bytes, CancellationToken ct)
    {
        var send = Task.Run(async () =>
        {
            var chunk = new byte[ChunkBytes];
            Random.Shared.NextBytes(chunk);
            for (long sent = 0; sent < bytes; sent += chunk.Length)
                await channel.SendAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, bytes - sent)), ct);
        }, ct);
        var buffer = new byte[ChunkBytes];
        long receives = 0;
        for (long received = 0; received < bytes; receives++) received += await channel.ReceiveAsync(buffer, ct);
        await send;
        return receives;
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    private static async Task<EchoChannel> DirectAsync(int echoPort, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, echoPort), ct);
        return new TcpEchoChannel(socket);
    }

    private static async Task<EchoChannel> WebSocketAsync(Uri url, CancellationToken ct)
    {
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("binary");
        await socket.ConnectAsync(url, ct);
        return new WebSocketEchoChannel(socket);
    }

    /// <summary>The baseline: Debian's websockify (WebSocket → TCP, one hop) in front of the same echo server.</summary>
    private sealed class Websockify : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly int _port;

        private Websockify(Process process, int port)
        {
            _process = process;
            _port = port;
        }

        public static async Task<Websockify> StartAsync(int echoPort)
        {
            var port = FreePort();
            var process = Process.Start(new ProcessStartInfo("websockify", [$"127.0.0.1:{port}", $"127.0.0.1:{echoPort}"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("websockify (Debian package 'websockify') did not start");
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            await WaitForPortAsync(port);
            return new Websockify(process, port);
        }

        public Task<EchoChannel> ConnectAsync(CancellationToken ct) => WebSocketAsync(new Uri($"ws://127.0.0.1:{_port}/"), ct);

        /// <summary>CPU time of websockify and its live descendants (it forks a handler per connection).</summary>
        public TimeSpan CpuTime()
        {
            var stats = new Dictionary<int, (int Parent, long Ticks)>();
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
                try
                {
                    var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                    var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                    // After "pid (comm) ": [1] ppid, [11] utime, [12] stime (clock ticks).
                    stats[pid] = (int.Parse(f[1], CultureInfo.InvariantCulture), long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture));
                }
                catch (IOException) { }
            }
            long ticks = 0;
            foreach (var (pid, (_, t)) in stats)
            {
                for (var p = pid; stats.TryGetValue(p, out var s); p = s.Parent)
                {
                    if (p == _process.Id) { ticks += t; break; }
                    if (s.Parent <= 1) break;
                }
            }
            return TimeSpan.FromSeconds(ticks / (double)ClockTicksPerSecond);
        }

        public async ValueTask DisposeAsync()
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
        }
    }

    /// <summary>
    /// Our full path: viewer ticket → viewer WebSocket → control plane relay → agent data WebSocket → the real
    /// StreamBridge → TCP to the echo server. The control plane runs in-process on SQLite with a running session row.
    /// </summary>
    private sealed class OurRelay : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly HttpClient _http;
        private readonly Uri _baseAddress;
        private readonly string _folder;
        private readonly string _sessionId;

        private OurRelay(WebApplication app, HttpClient http, Uri baseAddress, string folder, string sessionId)
        {
            _app = app;
            _http = http;
            _baseAddress = baseAddress;
            _folder = folder;
            _sessionId = sessionId;
        }

        public static async Task<OurRelay> StartAsync(int echoPort)
        {
            var folder = Path.Combine(Path.GetTempPath(), "streamspace-bench-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(folder);
            var opener = new InProcessAgent(echoPort);
            var app = StreamSpaceApp.Build(
            [
                "--urls", "http://127.0.0.1:0", $"--StreamSpace:DataFolder={folder}", $"--StreamSpace:AdminPassword={AdminPassword}",
                "--StreamSpace:EmbeddedAgent=false", "--Logging:LogLevel:Default=Warning",
            ], services => services.AddSingleton<IStreamOpener>(opener));
            await app.StartAsync();
            var baseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            opener.ControlPlane = baseAddress;
            var http = new HttpClient { BaseAddress = baseAddress };
            using var login = await http.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password = AdminPassword });
            login.EnsureSuccessStatusCode();
            var token = (await login.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

            var sessionId = "admin-bench-" + Guid.NewGuid().ToString("N")[..6];
            await using (var conn = await app.Services.GetRequiredService<Db>().OpenAsync(CancellationToken.None))
            {
                var now = DateTimeOffset.UtcNow;
                await conn.ExecuteAsync(
                    """
                    INSERT INTO sessions (id, user_id, username, template, state, agent_id, cpu, memory, persistent_home, created_at, updated_at)
                    SELECT @sessionId, id, username, 'bench', 'running', 'bench-agent', '1', '1Gi', @home, @now, @now FROM users WHERE username = 'admin'
                    """, new { sessionId, home = false, now });
            }
            return new OurRelay(app, http, baseAddress, folder, sessionId);
        }

        public async Task<EchoChannel> ConnectAsync(CancellationToken ct)
        {
            using var ticket = await _http.PostAsync($"/api/v1/sessions/{_sessionId}/viewer-ticket", null, ct);
            ticket.EnsureSuccessStatusCode();
            var url = (await ticket.Content.ReadFromJsonAsync<JsonElement>(ct)).GetProperty("url").GetString()!;
            return await WebSocketAsync(new UriBuilder(new Uri(_baseAddress, url)) { Scheme = "ws" }.Uri, ct);
        }

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
        }
    }

    private static int IntArg(string[] args, string name, int fallback) =>
        int.TryParse(StringArg(args, name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : fallback;

    private static string? StringArg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task WaitForPortAsync(int port)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>Plays the agent in-process: the real StreamBridge to the echo server, as the agent would to Xvnc.</summary>
    private sealed class InProcessAgent(int echoPort) : IStreamOpener
    {
        public Uri ControlPlane { get; set; } = null!;

        public Task OpenAsync(string agentId, string sessionId, StreamOpenArgs args, CancellationToken ct)
        {
            _ = Task.Run(() => StreamBridge.RunAsync(ControlPlane, args, async c =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, echoPort), c);
                return new NetworkStream(socket, ownsSocket: true);
            }, NullLogger.Instance, CancellationToken.None), CancellationToken.None);
            return Task.CompletedTask;
        }
    }
}
