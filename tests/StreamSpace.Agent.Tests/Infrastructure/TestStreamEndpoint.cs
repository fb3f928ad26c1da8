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
/// The control plane's end of stream data sockets (<c>/api/v1/agents/streams/{streamId}</c>), as the test sees them:
/// Kestrel on 127.0.0.1:0; each data socket an agent's bridge dials (with the stream's token) is handed to the test,
/// which plays the viewer's side of the relay.
/// </summary>
internal sealed class TestStreamEndpoint : IAsyncDisposable
{
    public const string Token = "stream-token-0123456789";

    private readonly WebApplication _app;
    private readonly Channel<(string StreamId, WebSocket Socket)> _sockets = Channel.CreateUnbounded<(string, WebSocket)>();
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private TestStreamEndpoint(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public static async Task<TestStreamEndpoint> StartAsync()
    {
        var app = TestControlPlane.LoopbackHost();
        var endpoint = new TestStreamEndpoint(app);
        app.Map("/api/v1/agents/streams/{streamId}", endpoint.AcceptAsync);
        endpoint.Url = await TestControlPlane.StartAsync(app);
        return endpoint;
    }

    /// <summary>What a <c>stream.open</c> command carries for a stream to this endpoint.</summary>
    public static StreamOpenArgs Args(string streamId) => new()
    {
        StreamId = streamId,
        DataPath = $"/api/v1/agents/streams/{streamId}",
        Token = Token,
    };

    /// <summary>The next data socket an agent dialled.</summary>
    public async Task<(string StreamId, WebSocket Socket)> NextAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        return await _sockets.Reader.ReadAsync(cts.Token);
    }

    private async Task AcceptAsync(HttpContext context)
    {
        if (context.Request.Headers.Authorization != $"Bearer {Token}" || !context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        _sockets.Writer.TryWrite(((string)context.Request.RouteValues["streamId"]!, socket));
        await _done.Task; // the socket belongs to this request: keep it until the test is done
    }

    public async ValueTask DisposeAsync()
    {
        _done.TrySetResult();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

internal static class DataSocketExtensions
{
    /// <summary>Reads (and drops) data until the agent's close frame; its status and reason.</summary>
    public static async Task<(WebSocketCloseStatus? Status, string? Reason)> ReadUntilCloseAsync(this WebSocket socket, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer.AsMemory(), cts.Token);
            if (result.MessageType == WebSocketMessageType.Close) return (socket.CloseStatus, socket.CloseStatusDescription);
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes of binary data.</summary>
    public static async Task<byte[]> ReadExactlyAsync(this WebSocket socket, int count, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var result = await socket.ReceiveAsync(buffer.AsMemory(read), cts.Token);
            if (result.MessageType == WebSocketMessageType.Close) throw new WebSocketClosedException(socket.CloseStatus, socket.CloseStatusDescription);
            read += result.Count;
        }
        return buffer;
    }
}
