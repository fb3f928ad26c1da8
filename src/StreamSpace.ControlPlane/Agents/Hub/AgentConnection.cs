using System.Net.WebSockets;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// One accepted control socket of one agent, identified by its own <see cref="ConnectionId"/> (epoch).
/// Sends are serialized; message handling and periodic reconciliation take <see cref="ProcessingLock"/>
/// so the tracked <see cref="Inventory"/> and the database change in the order the agent reported.
/// </summary>
public sealed class AgentConnection : IDisposable
{
    /// <summary>How long a polite close may take before the socket is aborted.</summary>
    private static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(2);

    private readonly WebSocket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime;

    public AgentConnection(string agentId, string tokenHash, WebSocket socket, CancellationToken requestAborted)
    {
        AgentId = agentId;
        TokenHash = tokenHash;
        _socket = socket;
        _lifetime = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
    }

    public string AgentId { get; }
    /// <summary>The stored hash of the token that authenticated this socket: the hello is written only while it is still the agent's.</summary>
    public string TokenHash { get; }
    public string ConnectionId { get; } = Guid.NewGuid().ToString("N");
    /// <summary>Cancelled when the connection ends for any reason (closed, replaced, timed out, shutdown).</summary>
    public CancellationToken Lifetime => _lifetime.Token;
    public SemaphoreSlim ProcessingLock { get; } = new(1, 1);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _delivered = new(StringComparer.Ordinal);

    /// <summary>True the first time a command id is offered for sending on this connection.</summary>
    public bool FirstDelivery(string commandId) => _delivered.TryAdd(commandId, 0);

    /// <summary>
    /// Forgets a command id offered here: its command reached a final state (or this connection did not claim it), so
    /// no pass offers it again as in flight. Without it, a connection carrying viewers' stream opens for weeks kept every
    /// command id it ever carried.
    /// </summary>
    public void ForgetDelivery(string commandId)
    {
        _delivered.TryRemove(commandId, out _);
        _handedOff.TryRemove(commandId, out _);
    }

    /// <summary>Command ids this connection remembers as offered (for tests).</summary>
    internal int DeliveredCount => _delivered.Count;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _handedOff = new(StringComparer.Ordinal);

    /// <summary>
    /// Takes a command that is being written already claimed for this connection (the outbox's hand-off): from now on it
    /// counts as carried here, so a reconnect pass that reads the committed row before the hand-off sends it leaves it
    /// alone instead of claiming it a second time. <see cref="TakeHandOff"/> then lets the hand-off send it.
    /// </summary>
    public bool ReserveHandOff(string commandId) => FirstDelivery(commandId) && _handedOff.TryAdd(commandId, 0);

    /// <summary>True once for a command <see cref="ReserveHandOff"/> took on this very connection (not on one that replaced it).</summary>
    public bool TakeHandOff(string commandId) => _handedOff.TryRemove(commandId, out _);

    /// <summary>What the agent runs, by session id (observed states); from hello, kept current by results and events. Guarded by <see cref="ProcessingLock"/>.</summary>
    public Dictionary<string, string> Inventory { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// <c>session.status</c> events the database did not take (an outage), oldest first, and those that arrived behind
    /// them (the hello's ended sessions too): applied again, in order, before the next event, at every reconciliation
    /// (which waits while any remain) and once more when the connection ends, so what the agent observed (an app that
    /// exited) is not lost and its session not later taken for lost. At most <see cref="TrackedSessionLimit"/>.
    /// Guarded by <see cref="ProcessingLock"/>.
    /// </summary>
    public List<SessionStatusPayload> UnappliedStatuses { get; } = [];

    /// <summary>
    /// Queues <paramref name="status"/> behind <see cref="UnappliedStatuses"/>, its reason cut to what the database keeps
    /// of it (it is cut so when applied anyway): the bound counts events, and an agent's reason may be up to a frame long.
    /// Returns the oldest event when the queue was full and it had to go. Call with <see cref="ProcessingLock"/> held.
    /// </summary>
    public SessionStatusPayload? HoldStatus(SessionStatusPayload status)
    {
        SessionStatusPayload? dropped = null;
        if (UnappliedStatuses.Count >= TrackedSessionLimit)
        {
            dropped = UnappliedStatuses[0];
            UnappliedStatuses.RemoveAt(0);
        }
        UnappliedStatuses.Add(status.Reason is { Length: > CommandResults.MaxReasonLength } reason
            ? status with { Reason = CommandResults.Reason(reason) }
            : status);
        return dropped;
    }

    /// <summary>
    /// How many sessions <see cref="Inventory"/> may hold before a report of one more the database does not know closes the
    /// connection (<see cref="SessionObservations.TrackingLimit"/>; set from the agent's capacity at hello).
    /// </summary>
    public int TrackedSessionLimit { get; set; } = SessionObservations.TrackingLimit(0);

    /// <summary>
    /// The hello's online write, once submitted (<see cref="AgentStatusWriter.MarkOnlineAsync"/>): it may still commit after
    /// the socket ended, so the cleanup waits for it and then writes offline (conditionally on this connection id).
    /// </summary>
    public Task? OnlineWrite { get; set; }

    // Latest capacity figures, written to the agents row by the heartbeat flusher. Draining is the agent's own word
    // (agents.agent_draining), never an admin's drain.
    public bool Draining { get; set; }
    public int ActiveSessions { get; set; }
    /// <summary>The most sessions the agent says it accepts (<c>agents.reported_capacity</c>); placement uses the smaller of it and <c>max_sessions</c>.</summary>
    public int ReportedCapacity { get; set; }

    public WebSocket Socket => _socket;

    public async Task SendAsync(Envelope envelope, CancellationToken ct)
    {
        var bytes = ProtocolJson.Encode(envelope);
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
    /// Sends a close frame (best effort, bounded) and ends the connection: the read loop sees the peer's
    /// close answer, or is cancelled after <see cref="CloseGrace"/>. Aborting at once would reset the TCP
    /// connection and could destroy the close frame (and a refusal before it) before the agent reads them.
    /// </summary>
    public async Task CloseAsync(WebSocketCloseStatus status, string description)
    {
        try
        {
            using var timeout = new CancellationTokenSource(CloseGrace);
            await _sendLock.WaitAsync(timeout.Token);
            try
            {
                if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
                    await _socket.CloseOutputAsync(status, description, timeout.Token);
            }
            finally
            {
                _sendLock.Release();
            }
            _lifetime.CancelAfter(CloseGrace);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The peer is gone or slow: nothing polite is left to do.
            Abort();
        }
    }

    /// <summary>
    /// Called by the reader once it stopped reading: after a close we sent, reads (and discards) until the
    /// peer's close arrives or the grace ends, then releases the socket.
    /// </summary>
    public async Task FinishAsync()
    {
        if (_socket.State == WebSocketState.CloseSent)
        {
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
            try
            {
                using var grace = new CancellationTokenSource(CloseGrace);
                while ((await _socket.ReceiveAsync(buffer.AsMemory(), grace.Token)).MessageType != WebSocketMessageType.Close)
                {
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
            {
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        Abort();
    }

    /// <summary>Ends the connection at once (dead peer, shutdown).</summary>
    public void Abort()
    {
        try { _lifetime.Cancel(); } catch (ObjectDisposedException) { }
        _socket.Abort();
    }

    public void Dispose()
    {
        _lifetime.Dispose();
        _sendLock.Dispose();
        ProcessingLock.Dispose();
    }
}
