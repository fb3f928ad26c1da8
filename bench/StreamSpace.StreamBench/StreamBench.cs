using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using Dapper;
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
    private const string AdminPassword = "bench-admin-password-1";

    public static async Task<int> MainAsync(string[] args)
    {
        var mib = IntArg(args, "--mib", 256);
        var streams = IntArg(args, "--streams", 4);
        if (mib < 1 || streams < 1)
        {
            Console.Error.WriteLine("usage: StreamBench [--mib N>=1] [--streams K>=1]");
            return 2;
        }
        var bytesPerStream = (long)mib * 1024 * 1024 / streams;
        await using var echo = EchoServer.Start();
        Console.WriteLine($"echo of {mib} MiB over {streams} concurrent streams, {ChunkBytes / 1024} KiB messages");

        var baseline = await WebsockifyAsync(echo.Port, streams, bytesPerStream);
        Console.WriteLine($"websockify (1 WebSocket hop):            {baseline,8:F1} MiB/s");
        var relay = await StreamSpaceRelayAsync(echo.Port, streams, bytesPerStream);
        Console.WriteLine($"StreamSpace relay (2 hops + bridge):     {relay,8:F1} MiB/s");
        Console.WriteLine($"ratio StreamSpace / websockify:          {relay / baseline,8:F2}");
        return 0;
    }

    private static async Task<double> WebsockifyAsync(int echoPort, int streams, long bytesPerStream)
    {
        var port = FreePort();
        using var websockify = Process.Start(new ProcessStartInfo("websockify", [$"127.0.0.1:{port}", $"127.0.0.1:{echoPort}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("websockify (Debian package 'websockify') did not start");
        websockify.BeginOutputReadLine();
        websockify.BeginErrorReadLine();
        try
        {
            await WaitForPortAsync(port);
            var urls = Enumerable.Range(0, streams).Select(_ => new Uri($"ws://127.0.0.1:{port}/")).ToList();
            return await EchoLoadAsync(urls, bytesPerStream);
        }
        finally
        {
            websockify.Kill(entireProcessTree: true);
            await websockify.WaitForExitAsync();
        }
    }

    private static async Task<double> StreamSpaceRelayAsync(int echoPort, int streams, long bytesPerStream)
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
        try
        {
            var baseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            opener.ControlPlane = baseAddress;
            using var http = new HttpClient { BaseAddress = baseAddress };
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
            var urls = new List<Uri>();
            for (var i = 0; i < streams; i++)
            {
                using var ticket = await http.PostAsync($"/api/v1/sessions/{sessionId}/viewer-ticket", null);
                ticket.EnsureSuccessStatusCode();
                var url = (await ticket.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("url").GetString()!;
                urls.Add(new UriBuilder(new Uri(baseAddress, url)) { Scheme = "ws" }.Uri);
            }
            return await EchoLoadAsync(urls, bytesPerStream);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Connects all clients, then each sends and reads back its share; aggregate echo MiB/s.</summary>
    private static async Task<double> EchoLoadAsync(IReadOnlyList<Uri> urls, long bytesPerStream)
    {
        var sockets = new List<ClientWebSocket>();
        foreach (var url in urls)
        {
            var socket = new ClientWebSocket();
            socket.Options.AddSubProtocol("binary");
            await socket.ConnectAsync(url, CancellationToken.None);
            sockets.Add(socket);
        }
        // A first echo per stream: the relay's rendezvous is part of connecting, not of the transfer.
        foreach (var socket in sockets) await EchoAsync(socket, ChunkBytes, CancellationToken.None);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(sockets.Select(s => Task.Run(() => EchoAsync(s, bytesPerStream, cts.Token))));
        var seconds = clock.Elapsed.TotalSeconds;
        foreach (var socket in sockets)
        {
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
            socket.Dispose();
        }
        return urls.Count * bytesPerStream / (1024.0 * 1024.0) / seconds;
    }

    private static async Task EchoAsync(WebSocket socket, long bytes, CancellationToken ct)
    {
        var send = Task.Run(async () =>
        {
            var chunk = new byte[ChunkBytes];
            Random.Shared.NextBytes(chunk);
            for (long sent = 0; sent < bytes; sent += chunk.Length)
                await socket.SendAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, bytes - sent)), WebSocketMessageType.Binary, true, ct);
        }, ct);
        var buffer = new byte[ChunkBytes];
        for (long received = 0; received < bytes;)
        {
            var r = await socket.ReceiveAsync(buffer.AsMemory(), ct);
            if (r.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException($"closed early: {socket.CloseStatusDescription}");
            received += r.Count;
        }
        await send;
    }

    private static int IntArg(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out var v) ? v : fallback;
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
