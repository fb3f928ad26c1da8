using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Threading.Channels;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// A test agent speaking the real protocol over a real <see cref="ClientWebSocket"/> to the real control
/// plane: every step is explicit so tests can script good and bad behaviour.
/// </summary>
public sealed class ScriptedAgent : IAsyncDisposable
{
    private readonly ClientWebSocket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Channel<Envelope> _inbox = Channel.CreateUnbounded<Envelope>();
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<WebSocketCloseStatus?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _reader = Task.CompletedTask;
    private Task _heartbeats = Task.CompletedTask;

    private ScriptedAgent(string agentId, ClientWebSocket socket)
    {
        AgentId = agentId;
        _socket = socket;
    }

    public string AgentId { get; }
    public WelcomePayload? Welcome { get; private set; }
    /// <summary>Every command frame received, in order (for exactly-once assertions).</summary>
    public List<CommandPayload> CommandsReceived { get; } = [];
    public int ActiveSessions { get; set; }
    /// <summary>The capacity the agent reports in its hello and heartbeats.</summary>
    public int MaxSessions { get; set; } = 10;
    /// <summary>The region the agent reports in its hello.</summary>
    public string Region { get; set; } = "default";

    public static Uri ConnectUri(Uri baseAddress) =>
        new(new Uri(baseAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal)), AgentHubSetup.ConnectPath);

    private static ClientWebSocket NewSocket(string? agentId, string? token)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (token is not null) socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        if (agentId is not null) socket.Options.SetRequestHeader(AgentTokenAuthentication.AgentIdHeader, agentId);
        return socket;
    }

    /// <summary>Opens the socket (no hello yet).</summary>
    public static async Task<ScriptedAgent> ConnectAsync(Uri baseAddress, string agentId, string token)
    {
        var socket = NewSocket(agentId, token);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(ConnectUri(baseAddress), timeout.Token);
        var agent = new ScriptedAgent(agentId, socket);
        agent._reader = agent.ReadLoopAsync();
        return agent;
    }

    /// <summary>Connects, says hello and waits for the welcome; heartbeats every welcome interval unless told not to.</summary>
    public static async Task<ScriptedAgent> OnlineAsync(Uri baseAddress, string agentId, string token,
        IReadOnlyList<SessionInventoryItem>? inventory = null, bool heartbeat = true)
    {
        var agent = await ConnectAsync(baseAddress, agentId, token);
        var welcome = await agent.HelloAsync(inventory);
        welcome.ShouldNotBeNull($"agent {agentId} was not welcomed");
        if (heartbeat) agent.StartHeartbeats();
        return agent;
    }

    /// <summary>Tries to connect and returns the HTTP status of a refused upgrade (null when the upgrade succeeded).</summary>
    public static async Task<HttpStatusCode?> RefusedUpgradeStatusAsync(Uri baseAddress, string? agentId, string? token)
    {
        using var socket = NewSocket(agentId, token);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await socket.ConnectAsync(ConnectUri(baseAddress), timeout.Token);
            socket.Abort();
            return null;
        }
        catch (WebSocketException)
        {
            return socket.HttpStatusCode;
        }
    }

    /// <summary>The refusal <see cref="HelloAsync"/> got instead of a welcome.</summary>
    public RefusedPayload? Refusal { get; private set; }

    /// <summary>Sends hello; returns the welcome, or null when refused (<see cref="Refusal"/> then says why).</summary>
    public async Task<WelcomePayload?> HelloAsync(IReadOnlyList<SessionInventoryItem>? inventory = null, string? claimedAgentId = null, int version = ProtocolVersion.Current,
        string? sessionLimits = null, bool draining = false)
    {
        await SendHelloAsync(inventory, claimedAgentId, version, sessionLimits, draining);
        var answer = await NextAsync(TimeSpan.FromSeconds(10));
        if (answer?.Type == MessageTypes.Refused) Refusal = answer.PayloadAs<RefusedPayload>();
        if (answer?.Type != MessageTypes.Welcome) return null;
        Welcome = answer.PayloadAs<WelcomePayload>();
        return Welcome;
    }

    /// <summary>Sends hello without waiting for the answer.</summary>
    public Task SendHelloAsync(IReadOnlyList<SessionInventoryItem>? inventory = null, string? claimedAgentId = null, int version = ProtocolVersion.Current,
        string? sessionLimits = null, bool draining = false)
    {
        var hello = new HelloPayload
        {
            AgentId = claimedAgentId ?? AgentId,
            Version = "test-1.0",
            Platform = Platforms.Process,
            Region = Region,
            Capacity = new AgentCapacity { MaxSessions = MaxSessions, ActiveSessions = inventory?.Count ?? 0 },
            SessionLimits = sessionLimits,
            Draining = draining,
            Inventory = inventory ?? [],
        };
        return SendAsync(Envelope.Create(MessageTypes.Hello, hello, DateTimeOffset.UtcNow) with { V = version });
    }

    public void StartHeartbeats()
    {
        var interval = TimeSpan.FromSeconds(Welcome?.HeartbeatIntervalSeconds ?? 1);
        _heartbeats = Task.Run(async () =>
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    await Task.Delay(interval, _stop.Token);
                    await HeartbeatAsync();
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException or InvalidOperationException)
            {
            }
        });
    }

    public Task HeartbeatAsync(bool draining = false) =>
        SendAsync(MessageTypes.Heartbeat, new HeartbeatPayload { ActiveSessions = ActiveSessions, MaxSessions = MaxSessions, Draining = draining });

    public Task SendAsync<T>(string type, T payload) => SendAsync(Envelope.Create(type, payload, DateTimeOffset.UtcNow));

    public Task SendAsync(Envelope envelope) => SendRawAsync(ProtocolJson.Encode(envelope));

    public Task SendTextAsync(string text) => SendRawAsync(Encoding.UTF8.GetBytes(text));

    public async Task SendRawAsync(byte[] bytes, WebSocketMessageType type = WebSocketMessageType.Text)
    {
        await _sendLock.WaitAsync();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await _socket.SendAsync(bytes, type, endOfMessage: true, timeout.Token);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public Task AckAsync(string commandId) => SendAsync(MessageTypes.Ack, new AckPayload { CommandId = commandId });

    public Task ResultAsync(string commandId, bool success, string? error = null) =>
        SendAsync(MessageTypes.Result, new ResultPayload { CommandId = commandId, Success = success, Error = error });

    public Task StatusAsync(string sessionId, string state, string? reason = null) =>
        SendAsync(MessageTypes.SessionStatus, new SessionStatusPayload { SessionId = sessionId, State = state, Reason = reason });

    /// <summary>The next message from the control plane, or null if none arrives in time or the socket closed.</summary>
    public async Task<Envelope?> NextAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return await _inbox.Reader.ReadAsync(cts.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            return null;
        }
    }

    /// <summary>The next command, failing the test if none arrives in time.</summary>
    public async Task<CommandPayload> ExpectCommandAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(10);
        var deadline = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < deadline)
        {
            var next = await NextAsync(deadline - DateTime.UtcNow);
            if (next?.Type == MessageTypes.Command) return next.PayloadAs<CommandPayload>();
            next.ShouldNotBeNull($"agent {AgentId} got no command within {limit}");
        }
        throw new ShouldAssertException($"agent {AgentId} got no command within {limit}");
    }

    /// <summary>Asserts that no message arrives for <paramref name="quiet"/>.</summary>
    public async Task ExpectNothingAsync(TimeSpan quiet)
    {
        var next = await NextAsync(quiet);
        next.ShouldBeNull($"agent {AgentId} unexpectedly got '{next?.Type}': {next?.Payload}");
    }

    /// <summary>Waits until the control plane closed the socket; returns its close status (null when the connection was aborted).</summary>
    public async Task<WebSocketCloseStatus?> ClosedByServerAsync(TimeSpan timeout)
    {
        var done = await Task.WhenAny(_closed.Task, Task.Delay(timeout));
        done.ShouldBe(_closed.Task, $"the control plane did not close agent {AgentId}'s socket within {timeout}");
        return await _closed.Task;
    }

    public bool IsOpen => _socket.State == WebSocketState.Open;

    /// <summary>The description of the control plane's close frame, once it arrived.</summary>
    public string? CloseDescription { get; private set; }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                using var message = new MemoryStream();
                WebSocketReceiveResult result;
                do
                {
                    result = await _socket.ReceiveAsync(buffer, _stop.Token);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        CloseDescription = result.CloseStatusDescription;
                        _closed.TrySetResult(result.CloseStatus);
                        return;
                    }
                    message.Write(buffer, 0, result.Count);
                } while (!result.EndOfMessage);
                if (ProtocolJson.TryDecode(message.ToArray(), out var envelope, out _) && envelope is not null)
                {
                    if (envelope.Type == MessageTypes.Command) lock (CommandsReceived) CommandsReceived.Add(envelope.PayloadAs<CommandPayload>());
                    await _inbox.Writer.WriteAsync(envelope);
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            _closed.TrySetResult(null);
        }
        finally
        {
            _inbox.Writer.TryComplete();
        }
    }

    /// <summary>Closes politely (close handshake).</summary>
    public async Task CloseAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            if (_socket.State == WebSocketState.Open)
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "test done", timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        await _stop.CancelAsync();
    }

    /// <summary>Drops the connection without a close frame, like a crashed process.</summary>
    public void Crash()
    {
        _stop.Cancel();
        _socket.Abort();
    }

    public async ValueTask DisposeAsync()
    {
        await CloseAsync();
        _socket.Abort();
        try { await Task.WhenAll(_reader, _heartbeats); } catch (Exception) { }
        _socket.Dispose();
        _stop.Dispose();
        _sendLock.Dispose();
    }
}
