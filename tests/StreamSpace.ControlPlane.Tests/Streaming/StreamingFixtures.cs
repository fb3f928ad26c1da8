using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using Dapper;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// A control plane whose <see cref="IStreamOpener"/> is replaced by <see cref="InProcessAgentSide"/> (the
/// agent hub is not part of this branch), with a fake clock for ticket expiry and a short rendezvous timeout.
/// </summary>
public abstract class StreamingControlPlane(DatabaseKind kind) : ControlPlaneFixture(kind)
{
    public FakeTimeProvider Clock { get; } = new(DateTimeOffset.UtcNow);
    public InProcessAgentSide AgentSide { get; } = new();

    /// <summary>The server side's socket of every request, by request path, to check what the relay did with them.</summary>
    public ConcurrentQueue<(string Path, Socket Socket)> ServerSockets { get; } = new();

    protected override IEnumerable<string> ExtraArgs => ["--StreamSpace:Streaming:RendezvousTimeout=00:00:02"];

    protected override void ConfigureServices(IServiceCollection services)
    {
        services.AddSingleton<TimeProvider>(Clock);
        services.AddSingleton<IStreamOpener>(AgentSide);
        services.AddSingleton<IStartupFilter>(new SocketRecorder(ServerSockets));
    }

    private sealed class SocketRecorder(ConcurrentQueue<(string Path, Socket Socket)> sockets) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use((http, following) =>
            {
                if (http.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket) sockets.Enqueue((http.Request.Path.Value ?? "", socket));
                return following(http);
            });
            next(app);
        };
    }

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        AgentSide.ControlPlane = BaseAddress;
    }
}

public sealed class StreamingSqliteControlPlane() : StreamingControlPlane(DatabaseKind.Sqlite);
public sealed class StreamingPostgresControlPlane() : StreamingControlPlane(DatabaseKind.Postgres);

/// <summary>The production opener (stream.open through the command outbox), with a short rendezvous timeout.</summary>
public sealed class StreamingCommandOpenerControlPlane() : ControlPlaneFixture(DatabaseKind.Sqlite)
{
    protected override IEnumerable<string> ExtraArgs => ["--StreamSpace:Streaming:RendezvousTimeout=00:00:03"];
}

/// <summary>
/// Plays the agent in-process: on stream.open it runs the real <see cref="StreamBridge"/> against the
/// VNC endpoint registered for the session (an echo server, a data source, a real Xvnc). Sessions
/// without a registered endpoint never dial back (to test the rendezvous timeout).
/// </summary>
public sealed class InProcessAgentSide : IStreamOpener
{
    private readonly ConcurrentDictionary<string, Func<CancellationToken, Task<Stream>>> _endpoints = new();

    public Uri ControlPlane { get; set; } = null!;
    public ConcurrentQueue<Task<StreamBridgeResult>> Bridges { get; } = new();
    public ConcurrentQueue<StreamOpenArgs> Opened { get; } = new();

    public void Serve(string sessionId, Func<CancellationToken, Task<Stream>> connectVnc) => _endpoints[sessionId] = connectVnc;

    public Task OpenAsync(string agentId, string sessionId, StreamOpenArgs args, CancellationToken ct)
    {
        Opened.Enqueue(args);
        if (_endpoints.TryGetValue(sessionId, out var connect))
            Bridges.Enqueue(Task.Run(() => StreamBridge.RunAsync(ControlPlane, args, connect, NullLogger.Instance, CancellationToken.None)));
        return Task.CompletedTask;
    }
}

public static class StreamingTestData
{
    /// <summary>Text sent by the viewer comes back through the agent's bridge to an echo endpoint; then the viewer closes and the bridge ends cleanly.</summary>
    public static async Task EchoesAndClosesAsync(ClientWebSocket viewer, Task<StreamBridgeResult> bridge, string text, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var hello = System.Text.Encoding.UTF8.GetBytes(text);
        await viewer.SendAsync(hello, WebSocketMessageType.Binary, true, cts.Token);
        (await new StreamingWebSocketReader(viewer).ReadExactAsync(hello.Length, cts.Token)).ShouldBe(hello);
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
        (await bridge.WaitAsync(timeout)).ShouldBe(StreamBridgeResult.Success);
    }

    /// <summary>Inserts a session row directly (the sessions API is another branch's work), on an agent that is online.</summary>
    public static async Task<string> CreateSessionAsync(this ControlPlaneFixture cp, string userId, string state = "running", string? agentId = "agent-test")
    {
        if (agentId is not null) await cp.InsertAgentAsync(agentId);
        var id = ControlPlaneFixture.Unique("s-xterm-");
        var now = DateTimeOffset.UtcNow;
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        var username = await conn.ExecuteScalarAsync<string>("SELECT username FROM users WHERE id = @userId", new { userId });
        await conn.ExecuteAsync(
            """
            INSERT INTO sessions (id, user_id, username, template, state, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@id, @userId, @username, 'xterm', @state, @agentId, '1', '1Gi', @home, @now, @now)
            """,
            new { id, userId, username, state, agentId, home = false, now });
        return id;
    }

    /// <summary>The session loses its agent (after a ticket was issued for it, say).</summary>
    public static async Task ClearSessionAgentAsync(this ControlPlaneFixture cp, string sessionId)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync("UPDATE sessions SET agent_id = NULL WHERE id = @sessionId", new { sessionId });
    }

    public static async Task SetSessionStateAsync(this ControlPlaneFixture cp, string sessionId, string state)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync("UPDATE sessions SET state = @state WHERE id = @sessionId", new { state, sessionId });
    }

    public static async Task<string> AdminUserIdAsync(this ControlPlaneFixture cp)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return await conn.ExecuteScalarAsync<string>("SELECT id FROM users WHERE username = 'admin'") ?? throw new InvalidOperationException("no admin");
    }

    public static async Task<(string Ticket, string Url)> TicketAsync(this HttpClient client, string sessionId)
    {
        using var response = await client.PostAsync($"/api/v1/sessions/{sessionId}/viewer-ticket", null);
        var json = await response.ShouldBeJsonAsync(System.Net.HttpStatusCode.OK);
        return (json.GetProperty("ticket").GetString()!, json.GetProperty("url").GetString()!);
    }

    /// <summary>A WebSocket upgrade request sent as plain HTTP, to see refusals (status and JSON body) before the upgrade.</summary>
    public static async Task<HttpResponseMessage> UpgradeRequestAsync(this ControlPlaneFixture cp, string pathAndQuery, string? origin = null, string? bearer = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(cp.BaseAddress, pathAndQuery));
        request.Headers.Connection.Add("Upgrade");
        request.Headers.Upgrade.Add(new ProductHeaderValue("websocket"));
        request.Headers.TryAddWithoutValidation("Sec-WebSocket-Version", "13");
        request.Headers.TryAddWithoutValidation("Sec-WebSocket-Key", Convert.ToBase64String(RandomNumberGenerator.GetBytes(16)));
        if (origin is not null) request.Headers.TryAddWithoutValidation("Origin", origin);
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return await cp.Client().SendAsync(request);
    }

    /// <summary>A viewer: a real WebSocket client on the ticket URL, offering noVNC's "binary" subprotocol.</summary>
    public static async Task<ClientWebSocket> ConnectViewerAsync(this ControlPlaneFixture cp, string url, string? origin = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol("binary");
        if (origin is not null) socket.Options.SetRequestHeader("Origin", origin);
        var builder = new UriBuilder(new Uri(cp.BaseAddress, url)) { Scheme = "ws" };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await socket.ConnectAsync(builder.Uri, cts.Token);
        return socket;
    }

    public static async Task<ClientWebSocket> ConnectViewerAsync(this ControlPlaneFixture cp, HttpClient user, string sessionId) =>
        await cp.ConnectViewerAsync((await user.TicketAsync(sessionId)).Url);

    /// <summary>Reads until the peer's close frame; returns it (fails on data or timeout).</summary>
    public static async Task<(WebSocketCloseStatus? Status, string? Reason)> ReadUntilCloseAsync(this WebSocket socket, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer.AsMemory(), cts.Token);
            if (r.MessageType == WebSocketMessageType.Close) return (socket.CloseStatus, socket.CloseStatusDescription);
        }
    }

    public static ILogger Log => NullLogger.Instance;
}
