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
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.StreamBench;

public static class StreamBench
{
    private const int ChunkBytes = 64 * 1024;
    private const int PingBytes = 64;
    /// <summary>
    /// Paced latency: each stream sends one ping this often. 16 ms is the fastest interactive input a viewer sends:
    /// browsers fire mousemove at most once per frame (60 Hz) and noVNC forwards each as a pointer event.
    /// </summary>
    private static readonly TimeSpan DefaultPaceInterval = TimeSpan.FromMilliseconds(16);
    private const string AdminPassword = "bench-admin-password-1";

    /// <summary>USER_HZ of /proc/*/stat times: 100 on every Linux architecture .NET runs on.</summary>
    private const int ClockTicksPerSecond = 100;

    public static async Task<int> MainAsync(string[] args)
    {
        var mib = IntArg(args, "--mib", 128);
        var pings = IntArg(args, "--pings", 2000);
        var pace = TimeSpan.FromMilliseconds(IntArg(args, "--pace-ms", (int)DefaultPaceInterval.TotalMilliseconds));
        var pacedFor = TimeSpan.FromSeconds(IntArg(args, "--paced-seconds", 2));
        var streamCounts = (StringArg(args, "--streams") ?? "1,10,100").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        // --only ours|floor|native: just that path, for profiling (perf/strace) without the others; no ratios then.
        var only = StringArg(args, "--only");
        if (mib < 1 || pings < 100 || streamCounts.Any(n => n < 1) || pace <= TimeSpan.Zero || pacedFor <= TimeSpan.Zero)
        {
            Console.Error.WriteLine("usage: StreamBench [--mib N>=1 per measurement] [--pings N>=100 saturated round trips per measurement] " +
                                    "[--pace-ms N>0 paced ping interval per stream] [--paced-seconds N>0] [--streams 1,10,100] [--only ours|floor|native] [--websockify-target unix|tcp]");
            return 2;
        }
        await using var echo = EchoServer.Start();
        Console.WriteLine($"echo server on loopback; throughput: {mib} MiB echoed per measurement in {ChunkBytes / 1024} KiB messages, split over the streams");
        Console.WriteLine($"paced latency: every stream sends a {PingBytes}-byte ping every {pace.TotalMilliseconds:0} ms (random phase) for {pacedFor.TotalSeconds:0} s");
        Console.WriteLine($"saturated latency: {pings} back-to-back round trips per measurement, split over the streams (measures CPU queueing, not the path)");
        Console.WriteLine($"{Environment.ProcessorCount} CPU(s); all clients, the relay and the in-process agent bridge share them");
        Console.WriteLine();

        var results = new List<Row>();
        var plan = new Plan(streamCounts, mib, pings, pace, pacedFor);
        if (only is null)
        {
            results.AddRange(await MeasureAsync("direct TCP", ct => DirectAsync(echo.Port, ct), null, plan));
            await using var websockify = await Websockify.StartAsync(echo, unixTarget: StringArg(args, "--websockify-target") != "tcp");
            results.AddRange(await MeasureAsync("websockify", websockify.ConnectAsync, websockify.CpuTime, plan));
        }
        if (only is null or "floor")
        {
            await using var floor = ForwarderChain.Start(echo.UnixPath);
            results.AddRange(await MeasureAsync("3-hop floor", floor.ConnectAsync, null, plan));
        }
        if (only is null or "native")
        {
            if (NativeForwarderChain.Executable() is { } forwarder)
            {
                await using var native = await NativeForwarderChain.StartAsync(forwarder, echo.UnixPath);
                results.AddRange(await MeasureAsync("native floor", native.ConnectAsync, native.CpuTime, plan));
            }
            else Console.WriteLine("native floor: skipped, no native-forwarder next to the bench (bench/stream.sh builds it with cc)");
        }
        if (only is null or "ours")
        {
            await using var ours = await OurRelay.StartAsync(echo.UnixPath);
            results.AddRange(await MeasureAsync("StreamSpace", ours.ConnectAsync, null, plan));
        }
        if (only is not null) return 0;

        Console.WriteLine();
        Console.WriteLine($"{"",29} {"paced (interactive)",-29} {"saturated",-19}");
        Console.WriteLine($"{"path",-12} {"streams",7} {"MiB/s",8} {"p50 µs",9} {"p99 µs",9} {"CPU µs/rt",9} {"p50 µs",9} {"p99 µs",9} {"CPU ms/MiB",11} {"KiB/recv",9}");
        foreach (var r in results)
            Console.WriteLine($"{r.Path,-12} {r.Streams,7} {r.MiBps,8:F1} {r.Paced.P50,9:F0} {r.Paced.P99,9:F0} {r.PacedCpuMicros,9:F0} {r.Saturated.P50,9:F0} {r.Saturated.P99,9:F0} {r.CpuMsPerMiB,11:F2} {r.KiBPerReceive,9:F1}");
        Console.WriteLine();
        Console.WriteLine("added p50 = the path's paced round-trip p50 minus direct TCP's at the same streams and pacing (saturated: same, back-to-back pings)");
        Console.WriteLine($"{"streams",7} {"ours/websockify MiB/s",22} {"(target >= 1.0)",16} {"ours added p50 µs",18} {"(target < 1000)",16} {"websockify added",17} {"3-hop floor added",18} {"native floor added",19} {"saturated: ours added",22} {"websockify added",17}");
        foreach (var n in streamCounts)
        {
            var direct = results.Single(r => r.Path == "direct TCP" && r.Streams == n);
            var ws = results.Single(r => r.Path == "websockify" && r.Streams == n);
            var ours = results.Single(r => r.Path == "StreamSpace" && r.Streams == n);
            var floor = results.Single(r => r.Path == "3-hop floor" && r.Streams == n);
            var native = results.SingleOrDefault(r => r.Path == "native floor" && r.Streams == n);
            var ratio = ours.MiBps / ws.MiBps;
            var added = ours.Paced.P50 - direct.Paced.P50;
            Console.WriteLine($"{n,7} {ratio,22:F2} {(ratio >= 1.0 ? "met" : "MISSED"),16} {added,18:F0} {(added < 1000 ? "met" : "MISSED"),16} " +
                              $"{ws.Paced.P50 - direct.Paced.P50,17:F0} {floor.Paced.P50 - direct.Paced.P50,18:F0} {(native is null ? "-" : (native.Paced.P50 - direct.Paced.P50).ToString("F0", CultureInfo.InvariantCulture)),19} {ours.Saturated.P50 - direct.Saturated.P50,22:F0} {ws.Saturated.P50 - direct.Saturated.P50,17:F0}");
        }
        return 0;
    }

    /// <param name="CpuMsPerMiB">CPU time (this process: clients, echo server, and for ours the relay and bridge; plus
    /// websockify's processes) per MiB echoed in the throughput phase: efficiency, independent of the machine's other load.</param>
    /// <param name="KiBPerReceive">Average bytes a client receive returned: how finely the path fragments 64 KiB messages.</param>
    /// <param name="Paced">Round trips in µs with every stream pinging at the interactive pace: the path's added latency.</param>
    /// <param name="Saturated">Round trips in µs with every stream pinging back-to-back: CPU queueing on a loaded machine.</param>
    /// <param name="PacedCpuMicros">CPU time (as for CpuMsPerMiB) per round trip in the paced phase.</param>
    private sealed record Row(string Path, int Streams, double MiBps, Latency Paced, Latency Saturated, double CpuMsPerMiB, double KiBPerReceive, double PacedCpuMicros);

    private sealed record Latency(double P50, double P99, int Samples)
    {
        public static Latency Of(IEnumerable<double[]> perStream)
        {
            var all = perStream.SelectMany(s => s).Order().ToArray();
            return new Latency(Percentile(all, 0.50), Percentile(all, 0.99), all.Length);
        }
    }

    private sealed record Plan(int[] StreamCounts, int MiB, int Pings, TimeSpan Pace, TimeSpan PacedFor);

    private static async Task<IReadOnlyList<Row>> MeasureAsync(
        string path, Func<CancellationToken, Task<EchoChannel>> connect, Func<TimeSpan>? externalCpu, Plan plan)
    {
        var rows = new List<Row>();
        foreach (var n in plan.StreamCounts)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var channels = new List<EchoChannel>();
            try
            {
                // Connect in small batches: the relay's rendezvous is part of connecting, not of what is measured.
                foreach (var batch in Enumerable.Range(0, n).Chunk(10))
                    channels.AddRange(await Task.WhenAll(batch.Select(_ => connect(cts.Token))));
                foreach (var c in channels) await PingAsync(c, new byte[PingBytes], cts.Token); // warm up every path

                var pacedCpuBefore = CpuTime(externalCpu);
                var paced = Latency.Of(await Task.WhenAll(channels.Select(c => Task.Run(() => PacedLatencyAsync(c, plan.Pace, plan.PacedFor, cts.Token), cts.Token))));
                // CPU per paced round trip: what the path costs per interactive message, steadier than its latency on a shared machine.
                var pacedCpuMicros = (CpuTime(externalCpu) - pacedCpuBefore).TotalMicroseconds / paced.Samples;
                var perStream = Math.Max(10, plan.Pings / n);
                var saturated = Latency.Of(await Task.WhenAll(channels.Select(c => Task.Run(() => SaturatedLatencyAsync(c, perStream, cts.Token), cts.Token))));
                var bytesPerStream = (long)plan.MiB * 1024 * 1024 / n;
                var cpuBefore = CpuTime(externalCpu);
                var allocatedBefore = GC.GetTotalAllocatedBytes();
                var clock = Stopwatch.StartNew();
                var receives = (await Task.WhenAll(channels.Select(c => Task.Run(() => ThroughputAsync(c, bytesPerStream, cts.Token), cts.Token)))).Sum();
                var totalMiB = n * bytesPerStream / (1024.0 * 1024.0);
                var mibps = totalMiB / clock.Elapsed.TotalSeconds;
                var cpuMsPerMiB = (CpuTime(externalCpu) - cpuBefore).TotalMilliseconds / totalMiB;
                // Managed allocation in this process per MiB echoed (clients included): a per-message allocation shows here.
                var allocatedPerMiB = (GC.GetTotalAllocatedBytes() - allocatedBefore) / totalMiB;
                var row = new Row(path, n, mibps, paced, saturated, cpuMsPerMiB, n * bytesPerStream / 1024.0 / receives, pacedCpuMicros);
                Console.WriteLine($"{row.Path,-12} {row.Streams,4} streams: {row.MiBps,7:F1} MiB/s   paced p50 {paced.P50,6:F0} µs p99 {paced.P99,6:F0} µs ({paced.Samples}, CPU {pacedCpuMicros:F0} µs each)   " +
                                  $"saturated p50 {saturated.P50,6:F0} µs p99 {saturated.P99,6:F0} µs ({saturated.Samples})   CPU {row.CpuMsPerMiB,5:F2} ms/MiB   {row.KiBPerReceive,4:F1} KiB/receive   {allocatedPerMiB / 1024,6:F1} KiB allocated/MiB");
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

    /// <summary>
    /// One ping every <paramref name="interval"/> for <paramref name="duration"/>, starting at a random phase so
    /// the streams do not fire in lockstep. A ping that comes back late is followed at once by the next due one,
    /// so a path that cannot keep up shows it in the figures instead of quietly sending fewer pings.
    /// </summary>
    private static async Task<double[]> PacedLatencyAsync(EchoChannel channel, TimeSpan interval, TimeSpan duration, CancellationToken ct)
    {
        var ping = new byte[PingBytes];
        Random.Shared.NextBytes(ping);
        var micros = new List<double>((int)(duration / interval) + 1);
        await Task.Delay(TimeSpan.FromTicks(Random.Shared.NextInt64(interval.Ticks)), ct);
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; ; i++)
        {
            var due = interval * i;
            if (due >= duration) break;
            var wait = due - Stopwatch.GetElapsedTime(start);
            if (wait > TimeSpan.Zero) await Task.Delay(wait, ct);
            var sent = Stopwatch.GetTimestamp();
            await PingAsync(channel, ping, ct);
            micros.Add(Stopwatch.GetElapsedTime(sent).TotalMicroseconds);
        }
        return [.. micros];
    }

    /// <summary>Back-to-back pings: with many streams this measures how long a ping queues behind the others on the CPUs.</summary>
    private static async Task<double[]> SaturatedLatencyAsync(EchoChannel channel, int count, CancellationToken ct)
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

    private static Task<EchoChannel> DirectAsync(int echoPort, CancellationToken ct) =>
        TcpEchoChannel.ConnectAsync(new IPEndPoint(IPAddress.Loopback, echoPort), ct);

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

        /// <param name="unixTarget">Reach the echo through its Unix socket, as our agent does (the default); else TCP.</param>
        public static async Task<Websockify> StartAsync(EchoServer echo, bool unixTarget)
        {
            var port = FreePort();
            string[] arguments = unixTarget ? [$"--unix-target={echo.UnixPath}", $"127.0.0.1:{port}"] : [$"127.0.0.1:{port}", $"127.0.0.1:{echo.Port}"];
            var process = Process.Start(new ProcessStartInfo("websockify", arguments)
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

        public static async Task<OurRelay> StartAsync(string echoUnixPath)
        {
            var folder = Path.Combine(Path.GetTempPath(), "streamspace-bench-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(folder);
            var opener = new InProcessAgent(echoUnixPath);
            var app = StreamSpaceApp.Build(
            [
                "--urls", "http://127.0.0.1:0", $"--StreamSpace:DataFolder={folder}", $"--StreamSpace:AdminPassword={AdminPassword}",
                "--StreamSpace:EmbeddedAgent=false", "--Logging:LogLevel:Default=Warning",
                // The in-process agent sends no heartbeats: an hour's interval keeps its row online for the whole run.
                "--StreamSpace:HeartbeatSeconds=3600",
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
                // Viewer tickets are only issued for a session whose agent is online.
                await conn.ExecuteAsync(
                    """
                    INSERT INTO agents (agent_id, token_hash, status, last_heartbeat, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                    VALUES ('bench-agent', @hash, 'online', @now, 'process', 'default', 10, 0, FALSE, @now, @now)
                    """, new { hash = AgentTokens.Hash(AgentTokens.Generate()), now });
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
    private sealed class InProcessAgent(string echoUnixPath) : IStreamOpener
    {
        public Uri ControlPlane { get; set; } = null!;

        public Task OpenAsync(string agentId, string sessionId, StreamOpenArgs args, CancellationToken ct)
        {
            _ = Task.Run(() => StreamBridge.RunAsync(ControlPlane, args, async c =>
            {
                // As ProcessRuntime.ConnectVncAsync reaches a session's Xvnc: its Unix socket.
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(echoUnixPath), c);
                InlineSocketCompletions.TryEnable(socket);
                return new NetworkStream(socket, ownsSocket: true);
            }, NullLogger.Instance, CancellationToken.None), CancellationToken.None);
            return Task.CompletedTask;
        }
    }
}
