using System.Buffers;
using System.Net.WebSockets;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Moves the frames of one WebSocket into another, one direction, in the style of YARP's StreamCopier:
/// a pooled buffer that is only held while data flows, a result value for expected endings, and no
/// allocation per message (ReceiveAsync/SendAsync over Memory return pooled ValueTasks).
/// </summary>
internal static class WebSocketRelayCopier
{
    /// <summary>
    /// 64 KiB: the size YARP settled on for its copier (larger buffers stopped paying off in their
    /// throughput measurements), and it covers the biggest frames noVNC and the agent bridge send
    /// (the bridge reads the VNC socket into 64 KiB chunks), so a frame moves in one receive/send pair.
    /// </summary>
    public const int BufferSize = 64 * 1024;

    /// <summary>
    /// Copies until the input closes, either side fails, or <paramref name="ct"/> fires. The input's
    /// close frame is not forwarded here: the relay closes both sides once one direction has ended.
    /// </summary>
    /// <param name="onInput">Called per received message (viewer input for activity); null for none.</param>
    public static async Task<(RelayCopyResult Result, Exception? Error)> CopyAsync(
        WebSocket input, WebSocket output, SessionActivity.Mark? onInput, CancellationToken ct)
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                ValueWebSocketReceiveResult received;
                try
                {
                    // A zero-byte receive waits for the next frame header without holding a buffer, so
                    // an idle stream (most viewers, most of the time) pins no 64 KiB array.
                    var peek = input.ReceiveAsync(Memory<byte>.Empty, ct);
                    if (!peek.IsCompletedSuccessfully && buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = null;
                    }
                    received = await peek;
                    if (received.MessageType != WebSocketMessageType.Close && !received.EndOfMessage)
                    {
                        buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                        received = await input.ReceiveAsync(buffer.AsMemory(), ct);
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return (RelayCopyResult.Canceled, null);
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    return (ct.IsCancellationRequested ? RelayCopyResult.Canceled : RelayCopyResult.InputError, ex);
                }

                if (received.MessageType == WebSocketMessageType.Close)
                    return (RelayCopyResult.Success, null);
                onInput?.Touch();

                try
                {
                    var data = received.Count == 0 ? ReadOnlyMemory<byte>.Empty : buffer.AsMemory(0, received.Count);
                    await output.SendAsync(data, received.MessageType, received.EndOfMessage, ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return (RelayCopyResult.Canceled, null);
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    return (ct.IsCancellationRequested ? RelayCopyResult.Canceled : RelayCopyResult.OutputError, ex);
                }
            }
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
