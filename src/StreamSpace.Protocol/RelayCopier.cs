using System.Buffers;
using System.Net.Sockets;
using System.Net.WebSockets;

namespace StreamSpace.Protocol;

/// <summary>
/// Moves the bytes of one direction of a stream, in the style of YARP's StreamCopier: one pooled buffer held
/// only while data flows (a zero-byte read waits for an idle input), a result value for expected endings, and
/// no allocation per message. Shared by the control plane's relay (viewer WebSocket ↔ agent data WebSocket)
/// and the agent's bridge (data WebSocket ↔ VNC connection), so both legs behave and perform the same.
/// </summary>
public static class RelayCopier
{
    /// <summary>
    /// 64 KiB: the size YARP settled on for its copier (larger buffers stopped paying off in their throughput
    /// measurements), and the biggest frame noVNC and the agent's bridge send, so a frame moves in one
    /// receive/send pair. The control plane's Kestrel receive blocks are the same size (RelayMemoryPool).
    /// </summary>
    public const int BufferSize = 64 * 1024;

    /// <summary>
    /// The copiers' own buffer pool. ArrayPool.Shared keeps only a few 64 KiB arrays per core, and every relay direction
    /// returns its buffer whenever its input goes idle and rents one again on the next message: with 100 busy streams
    /// (600 copiers) most rents missed the shared pool and allocated, ~700 KiB per MiB relayed (bench/stream.sh).
    /// Up to 1 024 free buffers (64 MiB) are kept: the high-water mark of that many busy directions, not a reservation.
    /// </summary>
    private static readonly ArrayPool<byte> Buffers = ArrayPool<byte>.Create(BufferSize, 1024);

    /// <summary>WebSocket → WebSocket, keeping message types and boundaries (the control plane's relay).</summary>
    /// <param name="onInput">Shown every received chunk before it is forwarded (the control plane looks for viewer input
    /// in it); null for none.</param>
    /// <param name="writes">Told when each write to <paramref name="output"/> begins and ends (a watchdog for a peer that
    /// stopped reading); null for none.</param>
    public static Task<(RelayCopyResult Result, Exception? Error)> CopyAsync(
        WebSocket input, WebSocket output, RelayInputObserver? onInput, CancellationToken ct, RelayWriteClock? writes = null) =>
        CopyAsync(new WebSocketRelayInput(input), new WebSocketRelayOutput(output), onInput, ct, writes);

    /// <summary>WebSocket → byte stream: message payloads in order (the agent's viewer-input direction).</summary>
    public static Task<(RelayCopyResult Result, Exception? Error)> CopyAsync(WebSocket input, Stream output, CancellationToken ct) =>
        CopyAsync(new WebSocketRelayInput(input), new StreamRelayOutput(output), null, ct);

    /// <summary>Byte stream → WebSocket: every read becomes one binary message (the agent's framebuffer direction).</summary>
    public static Task<(RelayCopyResult Result, Exception? Error)> CopyAsync(Stream input, WebSocket output, CancellationToken ct) =>
        CopyAsync(new StreamRelayInput(input), new WebSocketRelayOutput(output), null, ct);

    /// <summary>
    /// Copies until the input ends, either side fails, or <paramref name="ct"/> fires. A WebSocket input's
    /// close frame is not forwarded: the caller closes both sides once one direction has ended.
    /// </summary>
    private static async Task<(RelayCopyResult Result, Exception? Error)> CopyAsync<TInput, TOutput>(
        TInput input, TOutput output, RelayInputObserver? onInput, CancellationToken ct, RelayWriteClock? writes = null)
        where TInput : struct, IRelayInput
        where TOutput : struct, IRelayOutput
    {
        byte[]? buffer = null;
        // In the middle of a WebSocket message the rest of it is already on its way, so the next read goes
        // straight into the buffer we hold: a zero-byte wait there would cost one more receive (a syscall on
        // the agent's client socket) per chunk and release nothing. Between messages the wait is buffer-free
        // again, so an idle stream pins no memory.
        var midMessage = false;
        try
        {
            while (true)
            {
                RelayChunk chunk;
                try
                {
                    chunk = RelayChunk.Pending;
                    if (!midMessage)
                    {
                        var wait = input.WaitAsync(ct);
                        if (!wait.IsCompletedSuccessfully && buffer is not null)
                        {
                            Buffers.Return(buffer);
                            buffer = null;
                        }
                        chunk = await wait;
                    }
                    if (chunk == RelayChunk.Pending)
                    {
                        buffer ??= Buffers.Rent(BufferSize);
                        chunk = await input.ReadAsync(buffer.AsMemory(0, BufferSize), ct);
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return (RelayCopyResult.Canceled, null);
                }
                catch (Exception ex) when (IsConnectionFailure(ex))
                {
                    return (ct.IsCancellationRequested ? RelayCopyResult.Canceled : RelayCopyResult.InputError, ex);
                }

                if (chunk.Ended) return (RelayCopyResult.Success, null);
                var startOfMessage = !midMessage;
                midMessage = !chunk.EndOfMessage;
                onInput?.Invoke(chunk.Count == 0 ? ReadOnlySpan<byte>.Empty : buffer.AsSpan(0, chunk.Count), startOfMessage);

                try
                {
                    var data = chunk.Count == 0 ? ReadOnlyMemory<byte>.Empty : buffer.AsMemory(0, chunk.Count);
                    writes?.Begin();
                    await output.WriteAsync(data, chunk, ct);
                    writes?.End();
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return (RelayCopyResult.Canceled, null);
                }
                catch (Exception ex) when (IsConnectionFailure(ex))
                {
                    return (ct.IsCancellationRequested ? RelayCopyResult.Canceled : RelayCopyResult.OutputError, ex);
                }
            }
        }
        finally
        {
            if (buffer is not null) Buffers.Return(buffer);
        }
    }

    /// <summary>The ways a peer going away or misbehaving surfaces from WebSockets and streams.</summary>
    /// <remarks>
    /// An <see cref="OperationCanceledException"/> while <c>ct</c> has not fired is a connection aborted under the loop:
    /// Kestrel's <c>ConnectionAbortedException</c> (one of them) when the server aborts a connection it accepted.
    /// </remarks>
    private static bool IsConnectionFailure(Exception ex) =>
        ex is WebSocketException or IOException or SocketException or ObjectDisposedException or InvalidOperationException or NotSupportedException
            or OperationCanceledException;
}

/// <summary>
/// When the write a copy direction is in began (<see cref="RelayCopier"/>), for a watchdog that ends a stream whose
/// output stopped taking data. Two timestamp stores per message, no allocation.
/// </summary>
public sealed class RelayWriteClock(TimeProvider time)
{
    private long _since;

    /// <summary>Timestamp (<see cref="TimeProvider.GetTimestamp"/>) when the write under way began; 0 when none is.</summary>
    public long PendingSince => Volatile.Read(ref _since);

    /// <summary>How long the write under way has waited; zero when none is.</summary>
    public TimeSpan Pending => PendingSince is var since and not 0 ? time.GetElapsedTime(since) : TimeSpan.Zero;

    internal void Begin() => Volatile.Write(ref _since, Math.Max(1, time.GetTimestamp()));
    internal void End() => Volatile.Write(ref _since, 0);
}

/// <summary>
/// Sees one chunk of relayed input before it is forwarded: <paramref name="data"/> is only valid during the call, and
/// <paramref name="startOfMessage"/> says whether it begins a WebSocket message (else it continues the previous one).
/// </summary>
public delegate void RelayInputObserver(ReadOnlySpan<byte> data, bool startOfMessage);
