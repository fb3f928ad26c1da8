using System.Net.WebSockets;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Splices a viewer's WebSocket and the agent's data WebSocket of one stream. Each stream owns its two
/// sockets and two copy loops and shares no lock or queue with any other stream or the agent's control
/// channel, so a slow viewer only back-pressures its own stream (TCP flow control up to its Xvnc connection).
/// </summary>
internal static class StreamRelay
{
    /// <param name="access">When its <see cref="ViewerAccess.Grant.Ended"/> fires (the viewer's access ended), the stream
    /// ends with <see cref="ViewerAccess.Grant.Close"/>. Unlike <paramref name="ct"/> (the server stopping, the viewer's
    /// connection gone), which aborts both sockets, this drops the agent's side, so the viewer still gets a close frame
    /// with the reason.</param>
    /// <param name="stallTimeout">A send to the viewer waiting longer than this aborts the viewer (<see cref="StreamingOptions.StallTimeout"/>).</param>
    public static async Task RunAsync(
        WebSocket viewer, WebSocket agent, SessionActivity.Mark activity, TimeSpan closeTimeout, TimeSpan stallTimeout, TimeProvider time,
        ILogger logger, string streamId, ViewerAccess.Grant? access, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var revocation = access?.Ended.Register(agent.Abort);
        // Only a person's input counts as activity, not what the viewer sends by itself (handshake, update requests, fences).
        var input = new RfbInputDetector(activity.Touch);
        var viewerWrites = new RelayWriteClock(time);
        var toAgent = RelayCopier.CopyAsync(viewer, agent, input.Observe, cts.Token);
        var toViewer = RelayCopier.CopyAsync(agent, viewer, null, cts.Token, viewerWrites);
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var watchdog = AbortStalledViewerAsync(viewer, viewerWrites, stallTimeout, time, watching.Token);
        var first = await Task.WhenAny(toAgent, toViewer);
        await watching.CancelAsync();
        var stalled = await watchdog;
        var viewerEnded = first == toAgent;
        var (result, error) = await first;
        var (ended, other, otherLoop) = viewerEnded ? (viewer, agent, toViewer) : (agent, viewer, toAgent);

        // Closing either side closes both. The finished loop was the only sender to `other`, so its close
        // frame (with the ending side's status and reason) can go out now, while the other loop still
        // receives and so sees the peer's answering close. Cancelling that loop earlier would abort the
        // socket before the viewer learns why its stream ended.
        var (status, reason) = result switch
        {
            RelayCopyResult.Success => (ended.CloseStatus ?? WebSocketCloseStatus.NormalClosure, ended.CloseStatusDescription ?? ""),
            _ when access?.Ended.IsCancellationRequested == true => ViewerAccess.Grant.Close,
            _ when stalled => (WebSocketCloseStatus.PolicyViolation, StalledReason),
            // The viewer's connection dropped, or the control plane is stopping.
            RelayCopyResult.Canceled => (WebSocketCloseStatus.EndpointUnavailable, "The stream was ended by the server."),
            _ => (WebSocketCloseStatus.EndpointUnavailable, viewerEnded ? "The viewer connection failed." : "The session's stream ended unexpectedly."),
        };
        await SendCloseAsync(other, status, reason, closeTimeout);
        if (await Task.WhenAny(otherLoop, Task.Delay(closeTimeout, CancellationToken.None)) != otherLoop)
            await cts.CancelAsync();
        var (otherResult, _) = await otherLoop;
        await SendCloseAsync(ended, status, reason, closeTimeout);
        AbortIfOpen(viewer);
        AbortIfOpen(agent);
        if (stalled)
            logger.LogWarning("Stream {StreamId}: the viewer took no data for {StallTimeout}; its connection was aborted", streamId, stallTimeout);
        logger.LogInformation(
            "Stream {StreamId} ended: the {Side} side finished first ({Result}, close {Status}), the other with {OtherResult}",
            streamId, viewerEnded ? "viewer" : "agent", result, status, otherResult);
        if (error is not null) logger.LogDebug(error, "Stream {StreamId} copy error", streamId);
    }

    /// <summary>The reason the agent's side is closed with when the viewer was aborted for not reading.</summary>
    internal const string StalledReason = "The viewer stopped taking the stream's data.";

    /// <summary>
    /// Aborts the viewer once a send to it has waited <paramref name="stallTimeout"/>: then the relay's viewer direction
    /// fails and the stream ends both ways. Checked a few times per timeout, from one timer per stream. True when it did.
    /// </summary>
    private static async Task<bool> AbortStalledViewerAsync(WebSocket viewer, RelayWriteClock writes, TimeSpan stallTimeout, TimeProvider time, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(stallTimeout / 4, time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                if (writes.Pending < stallTimeout) continue;
                viewer.Abort();
                return true;
            }
        }
        catch (OperationCanceledException)
        {
        }
        return false;
    }

    /// <summary>Sends a close frame if this side has not sent one yet; never throws for a dead peer.</summary>
    internal static async Task SendCloseAsync(WebSocket socket, WebSocketCloseStatus status, string reason, TimeSpan timeout)
    {
        if (socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived)) return;
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await socket.CloseOutputAsync(status, Truncate(reason), cts.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The peer is gone; aborting is all that is left.
        }
    }

    internal static void AbortIfOpen(WebSocket socket)
    {
        if (socket.State is not (WebSocketState.Closed or WebSocketState.Aborted)) socket.Abort();
    }

    /// <summary>A close reason is at most 123 UTF-8 bytes (RFC 6455 §5.5); ours are ASCII.</summary>
    private static string Truncate(string reason) => reason.Length <= 123 ? reason : reason[..123];
}
