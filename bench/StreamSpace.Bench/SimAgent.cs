using System.Buffers;
using System.Net.WebSockets;
using StreamSpace.Protocol;

namespace StreamSpace.Bench;

/// <summary>
/// A simulated agent speaking the real protocol over a real WebSocket: hello, heartbeats, ack + success
/// result for every command, reconnect with full-jitter backoff. Thousands run in one benchmark process.
/// </summary>
internal sealed class SimAgent(string agentId, string token, Uri controlPlane, int maxSessions)
{
    private static readonly TimeSpan BackoffMin = TimeSpan.FromSeconds(0.5);
    private static readonly TimeSpan BackoffMax = TimeSpan.FromSeconds(30);
    /// <summary>
    /// One handler for the whole fleet: a ClientWebSocket without one builds its own handler per connect attempt, and
    /// thousands of refused attempts while the control plane restarts then cost this process (which shares the two
    /// cores with the control plane under test) seconds of CPU.
    /// </summary>
    private static readonly HttpMessageInvoker SharedInvoker = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero });

    public string AgentId => agentId;
    public bool Online { get; private set; }
    public long CommandsReceived;
    public long HeartbeatsSent;
    /// <summary>Send time of the latest heartbeat (UTC ticks), for the heartbeat-to-database lag.</summary>
    public long LastHeartbeatSentTicks;

    public async Task RunAsync(CancellationToken ct)
    {
        var attempt = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await RunConnectionAsync(() => attempt = 0, ct);
            }
            catch (Exception) when (!ct.IsCancellationRequested)
            {
                // reconnect below
            }
            Online = false;
            if (ct.IsCancellationRequested) break;
            var cap = Math.Min(BackoffMax.TotalMilliseconds, BackoffMin.TotalMilliseconds * Math.Pow(2, attempt++));
            try { await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap), ct); }
            catch (OperationCanceledException) { break; }
        }
    }

    private async Task RunConnectionAsync(Action connected, CancellationToken ct)
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + token);
        ws.Options.SetRequestHeader("X-StreamSpace-Agent-Id", agentId);
        ws.Options.KeepAliveInterval = TimeSpan.FromSeconds(30);
        var wsUri = new UriBuilder(new Uri(controlPlane, "/api/v1/agents/connect")) { Scheme = "ws" }.Uri;
        await ws.ConnectAsync(wsUri, SharedInvoker, ct);
        var send = new SemaphoreSlim(1, 1);
        async Task SendAsync(Envelope e)
        {
            var bytes = ProtocolJson.Encode(e);
            await send.WaitAsync(ct);
            try { await ws.SendAsync(bytes, WebSocketMessageType.Text, true, ct); }
            finally { send.Release(); }
        }

        await SendAsync(Envelope.Create(MessageTypes.Hello, new HelloPayload
        {
            AgentId = agentId, Version = "bench", Platform = Platforms.Simulated,
            Capacity = new AgentCapacity { MaxSessions = maxSessions }, Inventory = [],
        }, DateTimeOffset.UtcNow));

        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        using var heartbeatCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task? heartbeats = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var length = 0;
                ValueWebSocketReceiveResult r;
                do
                {
                    r = await ws.ReceiveAsync(buffer.AsMemory(length), ct);
                    length += r.Count;
                } while (!r.EndOfMessage && length < buffer.Length);
                if (r.MessageType == WebSocketMessageType.Close) return;
                if (!ProtocolJson.TryDecode(buffer.AsSpan(0, length), out var env, out _) || env is null) continue;
                switch (env.Type)
                {
                    case MessageTypes.Welcome:
                        var welcome = env.PayloadAs<WelcomePayload>();
                        Online = true;
                        connected();
                        heartbeats = HeartbeatLoopAsync(TimeSpan.FromSeconds(welcome.HeartbeatIntervalSeconds), SendAsync, heartbeatCts.Token);
                        break;
                    case MessageTypes.Refused:
                        throw new InvalidOperationException("refused: " + env.PayloadAs<RefusedPayload>().Reason);
                    case MessageTypes.Command:
                        var cmd = env.PayloadAs<CommandPayload>();
                        Interlocked.Increment(ref CommandsReceived);
                        await SendAsync(Envelope.Create(MessageTypes.Ack, new AckPayload { CommandId = cmd.CommandId }, DateTimeOffset.UtcNow, env.Id));
                        await SendAsync(Envelope.Create(MessageTypes.Result, new ResultPayload { CommandId = cmd.CommandId, Success = true }, DateTimeOffset.UtcNow, env.Id));
                        break;
                }
            }
        }
        finally
        {
            await heartbeatCts.CancelAsync();
            if (heartbeats is not null) { try { await heartbeats; } catch (OperationCanceledException) { } catch (WebSocketException) { } }
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task HeartbeatLoopAsync(TimeSpan interval, Func<Envelope, Task> send, CancellationToken ct)
    {
        // Spread the fleet's heartbeats over the interval, as independent agents would be.
        await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * interval.TotalMilliseconds), ct);
        using var timer = new PeriodicTimer(interval);
        do
        {
            Interlocked.Exchange(ref LastHeartbeatSentTicks, DateTime.UtcNow.Ticks);
            await send(Envelope.Create(MessageTypes.Heartbeat, new HeartbeatPayload { MaxSessions = maxSessions }, DateTimeOffset.UtcNow));
            Interlocked.Increment(ref HeartbeatsSent);
        } while (await timer.WaitForNextTickAsync(ct));
    }
}
