using Microsoft.Playwright;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>
/// What a viewer page does on the wire, as Chromium reports it: the viewer WebSockets (<c>/vnc</c>) it opened, whether
/// each is closed or has heard the session (the RFB server speaks first, so a frame means the stream reached Xvnc),
/// and how many viewer-ticket requests it finished.
/// </summary>
public sealed class ViewerSockets
{
    private readonly Lock _lock = new();
    private readonly List<(IWebSocket Socket, bool[] Spoke)> _sockets = [];
    private int _ticketsFinished;

    private ViewerSockets(IPage page)
    {
        page.WebSocket += (_, socket) =>
        {
            if (!new Uri(socket.Url).AbsolutePath.EndsWith("/vnc", StringComparison.Ordinal)) return;
            var spoke = new bool[1];
            socket.FrameReceived += (_, _) => { lock (_lock) spoke[0] = true; };
            lock (_lock) _sockets.Add((socket, spoke));
        };
        page.RequestFinished += (_, request) =>
        {
            if (new Uri(request.Url).AbsolutePath.EndsWith("/viewer-ticket", StringComparison.Ordinal)) Interlocked.Increment(ref _ticketsFinished);
        };
    }

    /// <summary>Starts watching; call before the page opens the viewer.</summary>
    public static ViewerSockets Watch(IPage page) => new(page);

    public int Opened
    {
        get { lock (_lock) return _sockets.Count; }
    }

    public int Open
    {
        get { lock (_lock) return _sockets.Count(s => !s.Socket.IsClosed); }
    }

    /// <summary>Sockets that reached the session at some point (open or not).</summary>
    public int Spoken
    {
        get { lock (_lock) return _sockets.Count(s => s.Spoke[0]); }
    }

    public int TicketsFinished => Volatile.Read(ref _ticketsFinished);

    /// <summary>Every socket opened so far is closed or has reached the session: no stream is still on its way.</summary>
    public bool Settled
    {
        get { lock (_lock) return _sockets.All(s => s.Socket.IsClosed || s.Spoke[0]); }
    }

    public override string ToString()
    {
        lock (_lock)
            return $"{_sockets.Count} viewer sockets: " + string.Join(", ", _sockets.Select(s => (s.Socket.IsClosed ? "closed" : "open") + (s.Spoke[0] ? "+spoke" : "")));
    }
}
