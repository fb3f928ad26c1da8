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
    /// <param name="sessionRunning">Asked every <see cref="CheckInterval"/>: false when the session is no longer running here
    /// (the control plane ended it without its agent, e.g. a stop that expired while the agent's control channel was down,
    /// whose data socket still relayed a live desktop); then the stream ends. Null: not asked.</param>
    public static async Task RunAsync(
        WebSocket viewer, WebSocket agent, SessionActivity.Mark activity, TimeSpan closeTimeout, TimeSpan stallTimeout, TimeProvider time,
        ILogger logger, string streamId, ViewerAccess.Grant? access, CancellationToken ct, Func<CancellationToken, Task<bool>>? sessionRunning = null)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var revocation = access?.Ended.Register(agent.Abort);
        // Only a person's input counts as activity, not what the viewer sends by itself (handshake, update requests, fences).
        var input = new RfbInputDetector(activity.Touch);
        var viewerWrites = new RelayWriteClock(time);
        var toAgent = RelayCopier.CopyAsync(viewer, agent, input.Observe, cts.Token);
        var toViewer = RelayCopier.CopyAsync(agent, viewer, null, cts.Token, viewerWrites);
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var watchdog = WatchAsync(viewer, agent, viewerWrites, stallTimeout, sessionRunning, time, logger, streamId, watching.Token);
        var first = await Task.WhenAny(toAgent, toViewer);
        await watching.CancelAsync();
        var watched = await watchdog;
        var stalled = watched == Watched.ViewerStalled;
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
            _ when watched == Watched.SessionEnded => (WebSocketCloseStatus.EndpointUnavailable, SessionEndedReason),
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

    /// <summary>The reason the viewer's stream ends with when its session stopped running without its agent's word.</summary>
    internal const string SessionEndedReason = "The session is no longer running.";

    /// <summary>How often a stream's watchdog looks (at most; a quarter of the stall timeout when that is shorter).</summary>
    internal static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(15);

    private enum Watched { Nothing, ViewerStalled, SessionEnded }

    /// <summary>
    /// One timer per stream. Aborts the viewer once a send to it has waited <paramref name="stallTimeout"/> (the viewer
    /// direction then fails and the stream ends both ways), and the agent's side once <paramref name="sessionRunning"/>
    /// says the session no longer runs (the viewer then gets the reason). A failed check counts as still running.
    /// </summary>
    private static async Task<Watched> WatchAsync(WebSocket viewer, WebSocket agent, RelayWriteClock writes, TimeSpan stallTimeout,
        Func<CancellationToken, Task<bool>>? sessionRunning, TimeProvider time, ILogger logger, string streamId, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(Math.Min(stallTimeout.Ticks / 4, CheckInterval.Ticks)), time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                if (writes.Pending >= stallTimeout)
                {
                    viewer.Abort();
                    return Watched.ViewerStalled;
                }
                if (sessionRunning is null) continue;
                try
                {
                    if (await sessionRunning(ct)) continue;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger.LogDebug(ex, "Stream {StreamId}: its session's state could not be read; checked again later", streamId);
                    continue;
                }
                logger.LogInformation("Stream {StreamId} ends: its session is no longer running", streamId);
                agent.Abort();
                return Watched.SessionEnded;
            }
        }
        catch (OperationCanceledException)
        {
        }
        return Watched.Nothing;
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
