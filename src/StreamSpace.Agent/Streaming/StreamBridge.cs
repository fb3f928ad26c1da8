using System.Net.Sockets;
using System.Net.WebSockets;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Streaming;

/// <summary>
/// The agent side of a stream (design §6): dials the one-time data WebSocket back to the control plane
/// and splices it with the session's VNC connection. One bridge per viewer; bridges share nothing, so
/// a slow viewer stalls only its own VNC connection, never another stream or the control channel.
/// </summary>
/// <remarks>
/// Wiring into the executor's <c>stream.open</c> handler (the command succeeds once the bridge is established,
/// and the pump must not block the executor or the reader):
/// <code>
/// var bridge = await StreamBridge.ConnectAsync(controlPlaneUrl, args, ct => runtime.ConnectVncAsync(sessionId, ct), logger, ct);
/// _ = Task.Run(async () => { await using (bridge) await bridge.PumpAsync(stoppingToken); });
/// return success;   // ConnectAsync throwing = the command's failure (reason in the exception)
/// </code>
/// The executor keeps each session's open bridges (<see cref="SessionStreams"/>) and ends them with
/// <see cref="CloseAsync"/> before it hibernates or stops the session.
/// </remarks>
public sealed class StreamBridge : IAsyncDisposable
{
    /// <summary>WebSocket keep-alive on the data socket: idle viewers (minutes without a frame) must survive NATs and proxies.</summary>
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(15);
    /// <summary>A control plane that stops answering pings for this long is treated as gone.</summary>
    public static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromSeconds(45);
    /// <summary>
    /// How long dialling the data socket and the VNC endpoint may take. The command that asked for the stream holds its
    /// session's other commands (stop, hibernate) until it is answered, and the data socket's one-time token is good for
    /// 30 s only: a replica that died since it asked, or a proxy that accepts and never answers, must fail the stream
    /// soon, not after the kernel's minutes of SYN retries.
    /// </summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How long closing waits for the control plane's close answer before aborting.</summary>
    public static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Dials data sockets whose completions run on the socket event thread (<see cref="InlineSocketCompletions"/>),
    /// for the bridge's copy loops, which never block. Switched after TLS (wss://), so the handshake and its certificate
    /// checks run on the thread pool; <see cref="ConnectAsync"/> leaves the event thread again once the upgrade is
    /// answered, before the VNC connection and the command's bookkeeping. Otherwise what ClientWebSocket's own handler
    /// does: an upgraded connection is never pooled.
    /// </summary>
    private static readonly HttpMessageInvoker DataSocketDialer = new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, ct) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, ct);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            context.InitialRequestMessage.Options.Set(DataSocketKey, socket);
            return new NetworkStream(socket, ownsSocket: true);
        },
        PlaintextStreamFilter = (context, _) =>
        {
            if (context.InitialRequestMessage.Options.TryGetValue(DataSocketKey, out var socket)) InlineSocketCompletions.TryEnable(socket);
            return ValueTask.FromResult(context.PlaintextStream);
        },
    });

    private static readonly HttpRequestOptionsKey<Socket> DataSocketKey = new("StreamSpace.DataSocket");

    private readonly ClientWebSocket _socket;
    private readonly Stream _vnc;
    private readonly string _streamId;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource<(WebSocketCloseStatus Status, string Reason)> _closeRequest =
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    private StreamBridge(ClientWebSocket socket, Stream vnc, string streamId, ILogger logger)
    {
        _socket = socket;
        _vnc = vnc;
        _streamId = streamId;
        _logger = logger;
    }

    /// <summary>
    /// Connects and pumps until either side ends. For callers that do not need the "established" moment.
    /// Throws when the data socket or the VNC endpoint cannot be connected (see <see cref="ConnectAsync"/>).
    /// </summary>
    public static async Task<StreamBridgeResult> RunAsync(
        Uri controlPlaneBase, StreamOpenArgs args, Func<CancellationToken, Task<Stream>> connectVnc, ILogger logger, CancellationToken ct)
    {
        await using var bridge = await ConnectAsync(controlPlaneBase, args, connectVnc, logger, ct);
        return await bridge.PumpAsync(ct);
    }

    /// <summary>
    /// Dials the data socket, then the VNC endpoint. Returns once both are connected (the moment the
    /// <c>stream.open</c> command succeeds); run <see cref="PumpAsync"/> in the background afterwards.
    /// If the VNC endpoint cannot be reached the data socket is closed with the reason, which the
    /// control plane passes on to the viewer, and the error is rethrown.
    /// </summary>
    public static async Task<StreamBridge> ConnectAsync(
        Uri controlPlaneBase, StreamOpenArgs args, Func<CancellationToken, Task<Stream>> connectVnc, ILogger logger, CancellationToken ct,
        TimeSpan? connectTimeout = null, TimeProvider? time = null)
    {
        var dataUri = DataUri(controlPlaneBase, args);
        var timeout = connectTimeout ?? ConnectTimeout;
        using var timer = new CancellationTokenSource(timeout, time ?? TimeProvider.System);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timer.Token);
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + args.Token);
        socket.Options.KeepAliveInterval = KeepAliveInterval;
        socket.Options.KeepAliveTimeout = KeepAliveTimeout;
        try
        {
            try
            {
                await socket.ConnectAsync(dataUri, DataSocketDialer, linked.Token);
            }
            finally
            {
                // The upgrade's answer (or its refusal) completed on the socket event thread, the data socket being inline
                // from before the request: leave it before anything that may block (the VNC connection, the command's
                // files and locks).
                await Task.Yield();
            }
        }
        catch (Exception ex) when (!ct.IsCancellationRequested && ex is OperationCanceledException or WebSocketException or HttpRequestException)
        {
            socket.Dispose();
            throw new SessionRuntimeException(timer.IsCancellationRequested
                ? $"the stream's data socket at {dataUri.Authority} did not answer within {timeout.TotalSeconds:0.#} s"
                : $"the stream's data socket at {dataUri.Authority} could not be opened: {ex.Message}", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Stream vnc;
        try
        {
            vnc = await connectVnc(linked.Token);
        }
        catch (Exception ex)
        {
            logger.LogWarning(ex, "Stream {StreamId}: could not connect to the session's VNC endpoint", args.StreamId);
            // A session that cannot be viewed right now (hibernated) says why; anything else is the agent's failure.
            var (status, reason) = ex is SessionRuntimeException { ViewerReason: { } why }
                ? (WebSocketCloseStatus.EndpointUnavailable, why)
                : (WebSocketCloseStatus.InternalServerError, "The agent could not connect to the session's display.");
            await CloseQuietlyAsync(socket, status, reason);
            socket.Dispose();
            if (ex is OperationCanceledException && timer.IsCancellationRequested && !ct.IsCancellationRequested)
                throw new SessionRuntimeException($"the session's VNC endpoint did not answer within {timeout.TotalSeconds:0.#} s", ex);
            throw;
        }
        logger.LogInformation("Stream {StreamId} established", args.StreamId);
        return new StreamBridge(socket, vnc, args.StreamId, logger);
    }

    /// <summary>
    /// Ends the stream for the agent's own reason (the session is about to be hibernated or stopped): the VNC
    /// connection is closed before this returns, so not one more byte of the viewer's input reaches the session (a
    /// stopped Xvnc would find it queued in the kernel and replay it on wake); the data socket is then closed with
    /// <paramref name="status"/> and <paramref name="reason"/>, which the control plane passes on to the viewer.
    /// </summary>
    public async Task CloseAsync(WebSocketCloseStatus status, string reason)
    {
        _closeRequest.TrySetResult((status, reason));
        await _vnc.DisposeAsync();
    }

    /// <summary>Pumps both directions until one ends or <see cref="CloseAsync"/> is called, then closes both.</summary>
    public async Task<StreamBridgeResult> PumpAsync(CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var toVnc = RelayCopier.CopyAsync(_socket, _vnc, cts.Token);
        var toControlPlane = RelayCopier.CopyAsync(_vnc, _socket, cts.Token);
        var first = await Task.WhenAny(toVnc, toControlPlane, _closeRequest.Task);
        // The agent's own close (CloseAsync) wins whichever copy its closing of the VNC connection ended first.
        var closedByAgent = _closeRequest.Task.IsCompleted;
        var result = closedByAgent ? StreamBridgeResult.ClosedByAgent : ToBridgeResult((await (first == toVnc ? toVnc : toControlPlane)).Result);

        if (!closedByAgent && first == toControlPlane)
        {
            // The VNC server ended: say so on the data socket (the viewer gets the reason), then stop reading it.
            await CloseQuietlyAsync(_socket, result == StreamBridgeResult.Success ? WebSocketCloseStatus.NormalClosure : WebSocketCloseStatus.EndpointUnavailable,
                result == StreamBridgeResult.Success ? "The session's display closed the connection." : "The connection to the session's display failed.");
            await EndWithinCloseTimeoutAsync(toVnc, cts);
        }
        else
        {
            // The control plane closed (viewer gone), or the agent ends the stream: ending the VNC connection ends the
            // other direction without cancelling a send, which would abort the socket before our close goes out.
            await _vnc.DisposeAsync();
            await EndWithinCloseTimeoutAsync(toControlPlane, cts);
            var (status, reason) = closedByAgent ? await _closeRequest.Task : (WebSocketCloseStatus.NormalClosure, "");
            await CloseQuietlyAsync(_socket, status, reason);
            // Ours: the control plane's answering close ends the data socket's reading side.
            if (closedByAgent) await EndWithinCloseTimeoutAsync(toVnc, cts);
        }
        _logger.LogInformation("Stream {StreamId} closed: {Result}", _streamId, result);
        return !closedByAgent && ct.IsCancellationRequested ? StreamBridgeResult.Canceled : result;
    }

    /// <summary>Waits for a copy loop to end on its own for <see cref="CloseTimeout"/>, then cancels it.</summary>
    private static async Task EndWithinCloseTimeoutAsync(Task loop, CancellationTokenSource cts)
    {
        if (await Task.WhenAny(loop, Task.Delay(CloseTimeout, CancellationToken.None)) != loop) await cts.CancelAsync();
        await loop;
    }

    private static StreamBridgeResult ToBridgeResult(RelayCopyResult result) => result switch
    {
        RelayCopyResult.Success => StreamBridgeResult.Success,
        RelayCopyResult.InputError => StreamBridgeResult.InputError,
        RelayCopyResult.OutputError => StreamBridgeResult.OutputError,
        _ => StreamBridgeResult.Canceled,
    };

    public async ValueTask DisposeAsync()
    {
        await _vnc.DisposeAsync();
        _socket.Dispose();
    }

    /// <summary>
    /// Where to dial the stream's data socket: the replica's own URL when the control plane sent one
    /// (<see cref="StreamOpenArgs.DataUrl"/>, so the socket reaches the replica where the viewer waits), else the
    /// control plane's base URL plus the data path; as ws(s)://.
    /// </summary>
    public static Uri DataUri(Uri controlPlaneBase, StreamOpenArgs args)
    {
        if (string.IsNullOrEmpty(args.DataUrl)) return DataUri(controlPlaneBase, args.DataPath);
        if (!Uri.TryCreate(args.DataUrl, UriKind.Absolute, out var url))
            throw new ArgumentException($"stream.open dataUrl '{args.DataUrl}' is not an absolute URL", nameof(args));
        return new UriBuilder(url) { Scheme = WebSocketScheme(url), Query = "" }.Uri;
    }

    private static string WebSocketScheme(Uri url) => url.Scheme switch
    {
        "https" or "wss" => "wss",
        "http" or "ws" => "ws",
        var other => throw new ArgumentException($"Control plane URL must be http(s), got {other}://", nameof(url)),
    };

    /// <summary>ws(s):// from the control plane's http(s):// base URL, plus the stream's data path.</summary>
    public static Uri DataUri(Uri controlPlaneBase, string dataPath)
    {
        var builder = new UriBuilder(controlPlaneBase) { Scheme = WebSocketScheme(controlPlaneBase) };
        var basePath = builder.Path.TrimEnd('/');
        builder.Path = basePath + "/" + dataPath.TrimStart('/');
        builder.Query = "";
        return builder.Uri;
    }

    private static async Task CloseQuietlyAsync(WebSocket socket, WebSocketCloseStatus status, string reason)
    {
        if (socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived)) return;
        using var cts = new CancellationTokenSource(CloseTimeout);
        try
        {
            await socket.CloseOutputAsync(status, reason, cts.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }
}
