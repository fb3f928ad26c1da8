using System.Buffers;
using System.Net.WebSockets;

namespace StreamSpace.Agent.Streaming;

/// <summary>
/// The two directions of a stream bridge, in the style of YARP's StreamCopier: pooled buffers held only
/// while data flows (zero-byte reads while idle), a result value instead of exceptions for expected
/// endings, no allocation per message.
/// </summary>
internal static class BridgeCopier
{
    /// <summary>
    /// 64 KiB: YARP's copier size (larger buffers stopped paying off in their throughput measurements);
    /// it also bounds the frames sent to the control plane, which relays them with the same buffer size.
    /// </summary>
    public const int BufferSize = 64 * 1024;

    /// <summary>Data socket → VNC connection (viewer input). Ends when the control plane closes the socket.</summary>
    public static async Task<StreamBridgeResult> WebSocketToStreamAsync(WebSocket input, Stream output, CancellationToken ct)
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                ValueWebSocketReceiveResult received;
                try
                {
                    var peek = input.ReceiveAsync(Memory<byte>.Empty, ct);
                    if (!peek.IsCompletedSuccessfully && buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = null;
                    }
                    received = await peek;
                    if (received.MessageType == WebSocketMessageType.Close) return StreamBridgeResult.Success;
                    if (received.EndOfMessage) continue; // an empty message carries no RFB bytes
                    buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                    received = await input.ReceiveAsync(buffer.AsMemory(), ct);
                    if (received.MessageType == WebSocketMessageType.Close) return StreamBridgeResult.Success;
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return StreamBridgeResult.Canceled;
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    return ct.IsCancellationRequested ? StreamBridgeResult.Canceled : StreamBridgeResult.InputError;
                }

                try
                {
                    await output.WriteAsync(buffer.AsMemory(0, received.Count), ct);
                    await output.FlushAsync(ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return StreamBridgeResult.Canceled;
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException or NotSupportedException)
                {
                    return ct.IsCancellationRequested ? StreamBridgeResult.Canceled : StreamBridgeResult.OutputError;
                }
            }
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>VNC connection → data socket (framebuffer updates). Ends when the VNC server closes.</summary>
    public static async Task<StreamBridgeResult> StreamToWebSocketAsync(Stream input, WebSocket output, CancellationToken ct)
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                int read;
                try
                {
                    // Zero-byte read: waits for data without a buffer on streams that support it (sockets);
                    // others complete at once and the real read below still behaves.
                    var peek = input.ReadAsync(Memory<byte>.Empty, ct);
                    if (!peek.IsCompletedSuccessfully)
                    {
                        if (buffer is not null)
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = null;
                        }
                        await peek;
                    }
                    buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                    read = await input.ReadAsync(buffer.AsMemory(), ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return StreamBridgeResult.Canceled;
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
                {
                    return ct.IsCancellationRequested ? StreamBridgeResult.Canceled : StreamBridgeResult.InputError;
                }
                if (read == 0) return StreamBridgeResult.Success;

                try
                {
                    await output.SendAsync(buffer.AsMemory(0, read), WebSocketMessageType.Binary, endOfMessage: true, ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return StreamBridgeResult.Canceled;
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or InvalidOperationException)
                {
                    return ct.IsCancellationRequested ? StreamBridgeResult.Canceled : StreamBridgeResult.OutputError;
                }
            }
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
