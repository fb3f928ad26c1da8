using System.Net.WebSockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests;

/// <summary>
/// A tiny control plane speaking the contract: Kestrel on 127.0.0.1:0, bearer token + agent id checked before
/// the upgrade (401 otherwise), then welcome (or refused). Each accepted connection is handed to the test.
/// </summary>
internal sealed class TestControlPlane : IAsyncDisposable
{
    public const string AgentId = "agent-under-test";
    public const string Token = "test-token-0123456789";

    private readonly WebApplication _app;
    private readonly Channel<TestAgentConnection> _connections = Channel.CreateUnbounded<TestAgentConnection>();
    private readonly System.Collections.Concurrent.ConcurrentBag<TestAgentConnection> _all = [];
    private int _attempts;

    private TestControlPlane(WebApplication app) => _app = app;

    /// <summary>When set, every hello is answered with this refusal instead of a welcome.</summary>
    public RefusedPayload? Refuse { get; set; }

    public int HeartbeatIntervalSeconds { get; set; } = 1;

    /// <summary>The protocol version the welcome envelope says it is in (a control plane of another version).</summary>
    public int WelcomeVersion { get; set; } = ProtocolVersion.Current;

    /// <summary>When set, every connection is closed right after its welcome (a control plane failing each agent at once).</summary>
    public bool CloseAfterWelcome { get; set; }

    /// <summary>How far this control plane's clock is from the test host's: the <c>ts</c> of what it sends (a host whose clock is off).</summary>
    public TimeSpan ClockOffset { get; set; }

    /// <summary>WebSocket upgrade requests that presented valid credentials.</summary>
    public int Attempts => Volatile.Read(ref _attempts);

    public string Url { get; private set; } = "";

    public static async Task<TestControlPlane> StartAsync()
    {
        var app = LoopbackHost();
        var cp = new TestControlPlane(app);
        app.Map("/api/v1/agents/connect", cp.AcceptAsync);
        cp.Url = await StartAsync(app);
        return cp;
    }

    /// <summary>Kestrel on 127.0.0.1:0 with WebSockets, quiet, quick to stop; map the endpoints, then <see cref="StartAsync(WebApplication)"/>.</summary>
    internal static WebApplication LoopbackHost()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0").UseShutdownTimeout(TimeSpan.FromSeconds(1));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.UseWebSockets();
        return app;
    }

    /// <summary>Starts <paramref name="app"/> and returns the address it listens on.</summary>
    internal static async Task<string> StartAsync(WebApplication app)
    {
        await app.StartAsync();
        return app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    }

    /// <summary>The next accepted, handshaken connection.</summary>
    public async Task<TestAgentConnection> NextConnectionAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        return await _connections.Reader.ReadAsync(cts.Token);
    }

    private async Task AcceptAsync(HttpContext context)
    {
        if (context.Request.Headers.Authorization != $"Bearer {Token}" || context.Request.Headers["X-StreamSpace-Agent-Id"] != AgentId)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            await context.Response.WriteAsJsonAsync(new { error = "unauthorized", message = "bad agent token" });
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }
        Interlocked.Increment(ref _attempts);
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var connection = new TestAgentConnection(socket) { ClockOffset = ClockOffset };
        _all.Add(connection);
        var hello = await connection.ReceiveAsync(TimeSpan.FromSeconds(10));
        connection.Hello = hello.PayloadAs<HelloPayload>();
        if (Refuse is { } refused)
        {
            await connection.SendAsync(MessageTypes.Refused, refused);
            await socket.CloseAsync(WebSocketCloseStatus.PolicyViolation, refused.Code, CancellationToken.None);
            return;
        }
        await connection.SendAsync(MessageTypes.Welcome, new WelcomePayload
        {
            HeartbeatIntervalSeconds = HeartbeatIntervalSeconds,
            ConnectionId = Guid.NewGuid().ToString("N"),
        }, WelcomeVersion);
        if (CloseAfterWelcome)
        {
            await socket.CloseAsync(WebSocketCloseStatus.InternalServerError, "test: failed after welcome", CancellationToken.None);
            return;
        }
        _connections.Writer.TryWrite(connection);
        await connection.Closed.Task; // keep the request (and the socket) alive until the test is done with it
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var connection in _all) connection.Closed.TrySetResult();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>The server side of one agent connection, as the test sees it.</summary>
internal sealed class TestAgentConnection
{
    private readonly WebSocket _socket;
    private readonly SemaphoreSlim _send = new(1, 1);

    public TestAgentConnection(WebSocket socket) => _socket = socket;

    public HelloPayload Hello { get; set; } = null!;

    /// <summary>See <see cref="TestControlPlane.ClockOffset"/>.</summary>
    public TimeSpan ClockOffset { get; init; }

    /// <summary>Now by this control plane's clock.</summary>
    public DateTimeOffset Now => DateTimeOffset.UtcNow + ClockOffset;

    public TaskCompletionSource Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task SendAsync<T>(string type, T payload, int version = ProtocolVersion.Current)
    {
        var envelope = Envelope.Create(type, payload, Now) with { V = version };
        await _send.WaitAsync();
        try
        {
            await _socket.SendAsync(ProtocolJson.Encode(envelope), WebSocketMessageType.Text, true, CancellationToken.None);
        }
        finally
        {
            _send.Release();
        }
    }

    public Task SendCommandAsync(string commandId, string type, string sessionId, object? args = null, int version = ProtocolVersion.Current,
        DateTimeOffset? expiresAt = null) =>
        SendAsync(MessageTypes.Command, new CommandPayload
        {
            CommandId = commandId,
            Type = type,
            SessionId = sessionId,
            Args = System.Text.Json.JsonSerializer.SerializeToElement(args ?? new { }, ProtocolJson.Options),
            ExpiresAt = expiresAt,
        }, version);

    /// <summary>Next envelope from the agent; throws on timeout or close.</summary>
    public async Task<Envelope> ReceiveAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[ProtocolJson.MaxFrameBytes];
        var length = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            if (length == buffer.Length)
            {
                // As the hub does: a frame over the limit is refused, never read on.
                await _socket.CloseAsync(WebSocketCloseStatus.MessageTooBig, "frame_too_large", CancellationToken.None);
                throw new WebSocketClosedException(WebSocketCloseStatus.MessageTooBig, $"frame over {ProtocolJson.MaxFrameBytes} bytes");
            }
            result = await _socket.ReceiveAsync(buffer.AsMemory(length), cts.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new WebSocketClosedException(_socket.CloseStatus, _socket.CloseStatusDescription);
            }
            length += result.Count;
        }
        while (!result.EndOfMessage);
        ProtocolJson.TryDecode(buffer.AsSpan(0, length), out var envelope, out var error).ShouldBeTrue(error);
        return envelope!;
    }

    /// <summary>Collects envelopes until <paramref name="done"/> says enough, or the time is up.</summary>
    public async Task<List<Envelope>> CollectAsync(Func<List<Envelope>, bool> done, TimeSpan timeout)
    {
        var received = new List<Envelope>();
        var deadline = DateTime.UtcNow + timeout;
        while (!done(received))
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"gave up after {timeout.TotalSeconds} s; got: {string.Join(", ", received.Select(e => e.Type))}");
            received.Add(await ReceiveAsync(left));
        }
        return received;
    }

    public async Task CloseAsync()
    {
        try
        {
            await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "test", CancellationToken.None);
        }
        catch (WebSocketException)
        {
        }
        Closed.TrySetResult();
    }
}

internal sealed class WebSocketClosedException(WebSocketCloseStatus? status, string? description)
    : Exception($"agent closed the connection: {status} {description}")
{
    public WebSocketCloseStatus? Status { get; } = status;
}
