using System.Buffers;
using System.Net.WebSockets;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Commands;
using StreamSpace.Agent.Hosting;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Connection;

/// <summary>How one connection ended, for the reconnect loop's log and backoff.</summary>
internal enum ConnectionOutcome
{
    /// <summary>Never got a welcome (unreachable, 401, refused, timeout): back off.</summary>
    HandshakeFailed,
    /// <summary>Was welcomed, then the connection closed or broke: reconnect (backoff was reset if it stayed up a heartbeat interval).</summary>
    Closed,
}

/// <summary>
/// One control WebSocket: handshake, then three independent loops (invariant 8): the reader (acks commands
/// at once and hands them to the executor), the single writer (drains the outbox) and the heartbeat timer.
/// </summary>
internal sealed class ControlConnection : IAsyncDisposable
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(2);

    private readonly AgentOptions _options;
    private readonly ISessionRuntime _runtime;
    private readonly CommandDedupeStore _store;
    private readonly CommandExecutor _executor;
    private readonly AgentOutbox _outbox;
    private readonly EndedSessions _ended;
    private readonly Func<bool> _draining;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    /// <summary>Commands outlive the connection they arrived on: they run on the agent's lifetime, not the socket's.</summary>
    private readonly CancellationToken _agentLifetime;
    private readonly ClientWebSocket _socket = new();
    // Writer frames and the close frame share the socket's send side: one at a time.
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    /// <summary>The agent closed the socket itself (a frame it cannot take), after logging why.</summary>
    private bool _closedByAgent;
    /// <summary>Set at the welcome (null before it, or when the welcome carried no time): turns a command's expiry into a deadline here.</summary>
    private ControlPlaneClock? _controlPlaneClock;

    public ControlConnection(AgentOptions options, ISessionRuntime runtime, CommandDedupeStore store, CommandExecutor executor,
        AgentOutbox outbox, EndedSessions ended, Func<bool> draining, ILogger logger, TimeProvider time, CancellationToken agentLifetime)
    {
        _ended = ended;
        _agentLifetime = agentLifetime;
        _options = options;
        _runtime = runtime;
        _store = store;
        _executor = executor;
        _outbox = outbox;
        _draining = draining;
        _logger = logger;
        _time = time;
    }

    public string? ConnectionId { get; private set; }

    /// <summary>
    /// Connects and runs until the connection ends. <paramref name="stayedUp"/> fires once the welcomed connection stayed
    /// up for one heartbeat interval: a connection the control plane welcomes and then drops at once (it fails on every
    /// hello, or a command kills the connection each time it is redelivered) must not reset the backoff into a hot loop.
    /// </summary>
    public async Task<ConnectionOutcome> RunAsync(Action stayedUp, CancellationToken ct)
    {
        var heartbeatInterval = await HandshakeAsync(ct);
        if (heartbeatInterval is null) return ConnectionOutcome.HandshakeFailed;

        using var loops = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var writer = WriteLoopAsync(loops.Token);
        var heartbeat = HeartbeatLoopAsync(heartbeatInterval.Value, stayedUp, loops.Token);
        try
        {
            await ReadLoopAsync(loops.Token);
        }
        finally
        {
            _ended.Disconnected(ConnectionId!);
            await loops.CancelAsync();
            await Task.WhenAll(writer, heartbeat);
        }
        return ConnectionOutcome.Closed;
    }

    /// <summary>Connect, hello, welcome. Null when the control plane is unreachable, rejects us or refuses the hello.</summary>
    private async Task<TimeSpan?> HandshakeAsync(CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.HandshakeTimeout);
        _socket.Options.SetRequestHeader("Authorization", $"Bearer {_options.Token}");
        _socket.Options.SetRequestHeader("X-StreamSpace-Agent-Id", _options.AgentId);
        _socket.Options.KeepAliveInterval = _options.KeepAliveInterval;
        // Pings that must be answered: without a timeout .NET sends unsolicited pongs and never notices a silent peer.
        _socket.Options.KeepAliveTimeout = _options.KeepAliveTimeout;
        _socket.Options.CollectHttpResponseDetails = true;
        var uri = _options.ConnectUri();
        try
        {
            await _socket.ConnectAsync(uri, timeout.Token);
        }
        catch (Exception ex) when (!ct.IsCancellationRequested && ex is WebSocketException or HttpRequestException or OperationCanceledException)
        {
            if (_socket.HttpStatusCode is System.Net.HttpStatusCode.Unauthorized or System.Net.HttpStatusCode.Forbidden)
            {
                _logger.LogError("Control plane at {Uri} rejected agent {AgentId}: HTTP {Status} (check STREAMSPACE_AGENT_TOKEN)", uri, _options.AgentId, (int)_socket.HttpStatusCode);
            }
            else
            {
                _logger.LogWarning("Cannot connect to the control plane at {Uri}: {Error}", uri, ex.Message);
            }
            return null;
        }

        var live = _runtime.Inventory();
        var ended = _ended.Snapshot().Where(e => live.All(s => s.SessionId != e.SessionId)).ToList();
        var (hello, helloFrame) = HelloFrame(live, ended);
        try
        {
            await SendAsync(helloFrame, timeout.Token);
            var answer = await ReceiveAsync(timeout.Token);
            switch (answer?.Type)
            {
                case MessageTypes.Welcome:
                    var welcome = answer.PayloadAs<WelcomePayload>();
                    ConnectionId = welcome.ConnectionId;
                    _controlPlaneClock = answer.Ts == default ? null : new ControlPlaneClock(answer.Ts, _time.GetTimestamp(), _time);
                    _ended.Welcomed(welcome.ConnectionId, ended, _time.GetTimestamp());
                    var seconds = welcome.HeartbeatIntervalSeconds > 0 ? welcome.HeartbeatIntervalSeconds : _options.HeartbeatSeconds;
                    _logger.LogInformation("Connected to {Uri} as {AgentId} (connection {ConnectionId}, protocol v{Version}, heartbeat {Seconds} s, {Sessions} sessions in inventory)",
                        uri, _options.AgentId, welcome.ConnectionId, welcome.AcceptedVersion, seconds, hello.Inventory.Count);
                    return TimeSpan.FromSeconds(seconds);
                case MessageTypes.Refused:
                    var refused = answer.PayloadAs<RefusedPayload>();
                    _logger.LogError("Control plane refused agent {AgentId}: {Code}: {Reason}", _options.AgentId, refused.Code, refused.Reason);
                    return null;
                case null when _closedByAgent:
                    return null; // ReceiveAsync logged why
                case null:
                    _logger.LogWarning("Control plane closed the connection before welcoming agent {AgentId}", _options.AgentId);
                    return null;
                default:
                    _logger.LogWarning("Expected welcome or refused, got {Type}", answer.Type);
                    return null;
            }
        }
        catch (Exception ex) when (!ct.IsCancellationRequested && ex is WebSocketException or ProtocolException or OperationCanceledException)
        {
            _logger.LogWarning("Handshake with {Uri} failed: {Error}", uri, ex.Message);
            return null;
        }
    }

    /// <summary>
    /// The hello, encoded, and never larger than the control plane accepts (it refuses a bigger one before any welcome,
    /// and only a welcome lets ended sessions go, so the agent would stay locked out). Too many ended sessions to list with
    /// their reasons: listed without them (the control plane then says "reported at reconnect"); still too many: the
    /// oldest are left out of this hello, and <paramref name="ended"/> is cut to what it carries. Those left out stay
    /// remembered (<see cref="EndedSessions"/>); their <c>session.status</c> still goes out, or a later hello lists them.
    /// </summary>
    private (HelloPayload Hello, byte[] Frame) HelloFrame(IReadOnlyList<SessionInventoryItem> live, List<EndedSessions.Entry> ended)
    {
        var withReasons = true;
        while (true)
        {
            var hello = new HelloPayload
            {
                AgentId = _options.AgentId,
                Version = AgentVersion.Value,
                Platform = _runtime.Platform,
                Region = _options.Region,
                Capacity = new AgentCapacity { MaxSessions = _options.MaxSessions, ActiveSessions = live.Count },
                Draining = _draining(),
                SessionLimits = _runtime.SessionLimits,
                Inventory = [.. live, .. ended.Select(e => new SessionInventoryItem { SessionId = e.SessionId, State = e.State, Reason = withReasons ? e.Reason : null })],
            };
            var frame = ProtocolJson.Encode(Envelope.Create(MessageTypes.Hello, hello, _time.GetUtcNow()));
            if (frame.Length <= ProtocolJson.MaxFrameBytes || ended.Count == 0) return (hello, frame);
            if (withReasons)
            {
                _logger.LogWarning("The hello listing {Count} ended sessions with their reasons takes {Bytes} bytes; sent without the reasons", ended.Count, frame.Length);
                withReasons = false;
                continue;
            }
            // Oldest first out, a tenth at a time (at least one): a hello is encoded a handful of times at most.
            var drop = Math.Max(1, ended.Count / 10);
            _logger.LogWarning("The hello listing {Count} ended sessions takes {Bytes} bytes; the {Drop} oldest left out of it", ended.Count, frame.Length, drop);
            ended.Sort((a, b) => a.At.CompareTo(b.At));
            ended.RemoveRange(0, drop);
        }
    }

    private async Task ReadLoopAsync(CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var envelope = await ReceiveAsync(ct);
                if (envelope is null) return;
                try
                {
                    Handle(envelope);
                }
                catch (Exception ex)
                {
                    // One message the agent could not handle must not cost the connection: dropping it would only
                    // bring the same message back after the reconnect, again and again.
                    _logger.LogError(ex, "Handling {Type} message {MessageId} failed", envelope.Type, envelope.Id);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (WebSocketException ex)
        {
            _logger.LogWarning("Control connection {ConnectionId} broke: {Error}", ConnectionId, ex.Message);
        }
        catch (OperationCanceledException ex)
        {
            // Not our cancellation: a keep-alive ping went unanswered, the socket aborted itself and the pending receive
            // ends like this, with the WebSocketException inside (sometimes inside an AggregateException).
            _logger.LogWarning("Control connection {ConnectionId} broke: {Error}", ConnectionId, AbortReason(ex));
        }
    }

    private static string AbortReason(OperationCanceledException aborted) => aborted.InnerException switch
    {
        AggregateException all => all.InnerExceptions.OfType<WebSocketException>().FirstOrDefault()?.Message ?? all.Message,
        { } inner => inner.Message,
        null => aborted.Message,
    };

    private void Handle(Envelope envelope)
    {
        switch (envelope.Type)
        {
            case MessageTypes.Command:
                CommandPayload command;
                try
                {
                    command = envelope.PayloadAs<CommandPayload>();
                }
                catch (ProtocolException ex)
                {
                    _logger.LogWarning("Ignoring malformed command {MessageId}: {Error}", envelope.Id, ex.Message);
                    return;
                }
                // Ack first, before anything can take time (contract §5).
                _outbox.Post(MessageTypes.Ack, new AckPayload { CommandId = command.CommandId }, envelope.Id);
                switch (_store.Admit(command, out var stored))
                {
                    case CommandAdmission.Execute:
                        _logger.LogInformation("Command {CommandId} ({Type}, session {SessionId}) received", command.CommandId, command.Type, command.SessionId);
                        _executor.Submit(command, _agentLifetime, _controlPlaneClock?.DeadlineOf(command.ExpiresAt));
                        break;
                    case CommandAdmission.AlreadyRunning:
                        _logger.LogInformation("Command {CommandId} redelivered while still running: re-acked", command.CommandId);
                        break;
                    case CommandAdmission.AlreadyFinished:
                        _logger.LogInformation("Command {CommandId} redelivered after it finished: re-sending its result", command.CommandId);
                        _outbox.Post(MessageTypes.Result, stored!, envelope.Id);
                        break;
                    case CommandAdmission.NotRecorded:
                        _logger.LogWarning("Command {CommandId} ({Type}, session {SessionId}) not executed: {Error}", command.CommandId, command.Type, command.SessionId, stored!.Error);
                        _outbox.Post(MessageTypes.Result, stored, envelope.Id);
                        break;
                }
                break;
            default:
                _logger.LogWarning("Ignoring message of unknown type {Type}", envelope.Type);
                break;
        }
    }

    private async Task WriteLoopAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var frame in _outbox.Reader.ReadAllAsync(ct))
            {
                try
                {
                    await SendAsync(frame.Envelope, ct);
                    frame.Written?.TrySetResult(true);
                }
                catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
                {
                    frame.Written?.TrySetResult(false);
                    _logger.LogDebug("Writer stopped: {Error}", ex.Message);
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Heartbeats every <paramref name="interval"/>; the first tick also means the connection stayed up that long.</summary>
    private async Task HeartbeatLoopAsync(TimeSpan interval, Action stayedUp, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval, _time);
        try
        {
            var first = true;
            while (await timer.WaitForNextTickAsync(ct))
            {
                _outbox.Post(MessageTypes.Heartbeat, Heartbeat());
                if (first) stayedUp();
                first = false;
                // Still up: what this connection reported long before the keep-alive would have caught a dead peer
                // (a ping within the interval after the write, unanswered for the timeout; twice that for the timers' slack) arrived.
                _ended.Settle(ConnectionId!, _time, 2 * (_options.KeepAliveInterval + _options.KeepAliveTimeout));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public HeartbeatPayload Heartbeat() => new()
    {
        ActiveSessions = _runtime.Inventory().Count,
        MaxSessions = _options.MaxSessions,
        Draining = _draining(),
    };

    /// <summary>Drain: tell the control plane (heartbeat with draining=true, through the writer), then close cleanly.</summary>
    public async Task CloseForDrainAsync(CancellationToken ct)
    {
        if (_socket.State != WebSocketState.Open) return;
        var sent = _outbox.PostAndWaitAsync(MessageTypes.Heartbeat, Heartbeat());
        await Task.WhenAny(sent, Task.Delay(CloseTimeout, _time, ct));
        await _sendLock.WaitAsync(ct);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(CloseTimeout);
            await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "agent draining", timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // ObjectDisposedException: the connection broke meanwhile and the worker disposed it.
            _logger.LogDebug("Closing the control connection failed: {Error}", ex.Message);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private Task SendAsync(Envelope envelope, CancellationToken ct) => SendAsync(ProtocolJson.Encode(envelope), ct);

    private async Task SendAsync(byte[] bytes, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            await _socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, ct);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>
    /// One whole text frame, decoded; null when the peer closed. Oversized frames and envelopes of a protocol version
    /// this agent does not speak close the connection; frames that are no envelope at all are skipped.
    /// </summary>
    private async Task<Envelope?> ReceiveAsync(CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (true)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        if (buffer.Length >= ProtocolJson.MaxFrameBytes)
                        {
                            _logger.LogWarning("Control plane sent a frame over {Limit} bytes; closing", ProtocolJson.MaxFrameBytes);
                            await CloseQuietlyAsync(WebSocketCloseStatus.MessageTooBig, "frame too large", ct);
                            return null;
                        }
                        var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, ProtocolJson.MaxFrameBytes));
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                    result = await _socket.ReceiveAsync(buffer.AsMemory(length), ct);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        _logger.LogInformation("Control plane closed connection {ConnectionId}: {Status} {Description}",
                            ConnectionId, _socket.CloseStatus, _socket.CloseStatusDescription);
                        return null;
                    }
                    length += result.Count;
                }
                while (!result.EndOfMessage);

                if (result.MessageType != WebSocketMessageType.Text)
                {
                    _logger.LogWarning("Ignoring a binary frame on the control connection");
                    continue;
                }
                if (ProtocolJson.TryDecode(buffer.AsSpan(0, length), out var envelope, out var error))
                {
                    return envelope;
                }
                if (envelope is not null)
                {
                    // An envelope of another version (protocol.md, Versioning): its shape cannot be trusted, and skipping it
                    // would leave a welcome or refused to the handshake timeout and a command unacked, redelivered for ever.
                    // Ending the connection sends the worker into its backoff, so a control plane that keeps doing it is
                    // not dialled in a hot loop.
                    _logger.LogError("Control plane sent {Type} message {MessageId} in protocol version {Version}; this agent speaks {MinSupported}..{Current}: closing the connection (the agent and the control plane need a common protocol version)",
                        envelope.Type, envelope.Id, envelope.V, ProtocolVersion.MinSupported, ProtocolVersion.Current);
                    await CloseQuietlyAsync(WebSocketCloseStatus.PolicyViolation, $"unsupported protocol version {envelope.V}", ct);
                    return null;
                }
                _logger.LogWarning("Ignoring an undecodable frame from the control plane: {Error}", error);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task CloseQuietlyAsync(WebSocketCloseStatus status, string description, CancellationToken ct)
    {
        _closedByAgent = true;
        await _sendLock.WaitAsync(ct);
        try
        {
            await _socket.CloseOutputAsync(status, description, ct);
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        // _sendLock is not disposed: a drain may still wait on it for a connection that broke meanwhile (it has no wait handle to free).
        return ValueTask.CompletedTask;
    }
}
