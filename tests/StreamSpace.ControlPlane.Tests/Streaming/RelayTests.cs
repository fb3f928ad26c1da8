using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using Dapper;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// The relay end to end on real sockets: viewer WebSocket → control plane → agent data WebSocket (the real
/// <see cref="StreamBridge"/>, started by the in-process opener seam instead of a hub-delivered stream.open)
/// → a loopback TCP "VNC" server.
/// </summary>
public sealed class RelayTests(StreamingSqliteControlPlane cp) : IClassFixture<StreamingSqliteControlPlane>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Relay_with_in_process_agent_side_echoes_bytes_and_viewer_close_ends_the_bridge_and_the_vnc_connection()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        var bridgesBefore = cp.AgentSide.Bridges.Count;

        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var message = "RFB 003.008\n"u8.ToArray();
        await viewer.SendAsync(message, WebSocketMessageType.Binary, true, CancellationToken.None);
        using var cts = new CancellationTokenSource(Timeout);
        (await new StreamingWebSocketReader(viewer).ReadExactAsync(message.Length, cts.Token)).ShouldBe(message);
        echo.OpenConnections.ShouldBe(1);

        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        viewer.State.ShouldBe(WebSocketState.Closed);
        var bridge = cp.AgentSide.Bridges.ToArray()[bridgesBefore];
        (await bridge.WaitAsync(Timeout)).ShouldBe(StreamBridgeResult.Success);
        await WaitUntilAsync(() => echo.OpenConnections == 0);
    }

    [Fact]
    public async Task Relay_runs_on_the_socket_event_threads_on_both_legs_and_leaves_api_connections_on_the_thread_pool()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        // The agent's side: where its bridge writes the viewer's bytes towards the session's display.
        var writers = new ConcurrentQueue<string?>();
        cp.AgentSide.Serve(session, async ct => new WriteThreadRecorder(await echo.ConnectAsync(ct), writers));
        var openedBefore = cp.AgentSide.Opened.Count;

        using var viewer = await cp.ConnectViewerAsync(alice, session);
        using var cts = new CancellationTokenSource(Timeout);
        var reader = new StreamingWebSocketReader(viewer);
        // The first message may find the bridge not yet reading; later ones find its loop waiting on the data socket
        // (unless the machine paused the loop's thread until the next message was there: hence five).
        foreach (var message in new[] { "RFB 003.008\n"u8.ToArray(), "two"u8.ToArray(), "three"u8.ToArray(), "four"u8.ToArray(), "five"u8.ToArray() })
        {
            await viewer.SendAsync(message, WebSocketMessageType.Binary, true, cts.Token);
            (await reader.ReadExactAsync(message.Length, cts.Token)).ShouldBe(message);
        }

        var dataPath = cp.AgentSide.Opened.ToArray()[openedBefore].DataPath;
        var relayed = cp.ServerSockets.Where(s => s.Path == $"/api/v1/sessions/{session}/vnc" || s.Path == dataPath).ToList();
        relayed.Count.ShouldBe(2, "the viewer's WebSocket and the agent's data WebSocket");
        relayed.ShouldAllBe(s => InlineSocketCompletions.IsEnabledOn(s.Socket));
        // The ticket request came on a connection of its own, which went on serving requests on the thread pool.
        var api = cp.ServerSockets.Where(s => s.Path == $"/api/v1/sessions/{session}/viewer-ticket").ToList();
        api.ShouldNotBeEmpty();
        api.ShouldAllBe(s => !InlineSocketCompletions.IsEnabledOn(s.Socket));
        writers.Skip(1).ShouldContain(".NET Sockets", "the agent's data socket completes where epoll reports it, and the bridge writes from there");
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
    }

    /// <summary>A VNC connection that notes the thread of every write.</summary>
    private sealed class WriteThreadRecorder(Stream inner, ConcurrentQueue<string?> threads) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => inner.ReadAsync(buffer, ct);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            threads.Enqueue(Thread.CurrentThread.Name);
            return inner.WriteAsync(buffer, ct);
        }

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync();
            await base.DisposeAsync();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }

    [Fact]
    public async Task Relay_with_in_process_agent_side_vnc_server_closing_closes_the_viewer_with_a_reason()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        // A "VNC server" that accepts and hangs up at once.
        cp.AgentSide.Serve(session, ct => Task.FromResult<Stream>(new MemoryStream([], writable: false)));

        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.NormalClosure);
        reason.ShouldNotBeNull().ShouldContain("display");
    }

    /// <summary>
    /// A viewer that stops reading (a frozen tab, or on purpose) blocks the relay's send to it, and while that waits nothing
    /// reads the agent's side: the stream, its buffers and sockets stayed for ever, even after the session's side ended. A
    /// send waiting StallTimeout (1 min by default; this fixture's clock is advanced) aborts the viewer and ends both sides.
    /// </summary>
    [Fact]
    public async Task Relay_aborts_a_viewer_that_took_no_data_for_the_stall_timeout_and_ends_the_sessions_side()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var source = StreamingTestServer.Source(); // a busy desktop
        cp.AgentSide.Serve(session, source.ConnectAsync);
        var access = cp.App.Services.GetRequiredService<ViewerAccess>();
        var grantsBefore = access.Count;
        using var viewer = await cp.ConnectViewerAsync(alice, session); // and never read from
        await WaitUntilAsync(() => source.OpenConnections == 1);
        await Task.Delay(TimeSpan.FromSeconds(2), TestContext.Current.CancellationToken); // the socket buffers fill, the send waits
        access.Count.ShouldBe(grantsBefore + 1);

        cp.Clock.Advance(TimeSpan.FromSeconds(45)); // under the timeout: kept
        await Task.Delay(TimeSpan.FromMilliseconds(500), TestContext.Current.CancellationToken);
        access.Count.ShouldBe(grantsBefore + 1, "a send waiting less than the stall timeout is left alone");
        cp.Clock.Advance(TimeSpan.FromSeconds(30));

        await WaitUntilAsync(() => access.Count == grantsBefore && source.OpenConnections == 0);
    }

    /// <summary>
    /// The control plane ended the session without its agent (a stop that expired while the agent's control channel was
    /// down, or its token was rotated): the agent's data socket still relayed the live desktop, which took input while the
    /// API said "terminated". The relay asks for the session's state now and then and ends the stream when it stopped running.
    /// </summary>
    [Fact]
    public async Task Relay_ends_the_stream_once_its_session_no_longer_runs_though_the_agent_side_is_still_open()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        using var cts = new CancellationTokenSource(Timeout);
        var reader = new StreamingWebSocketReader(viewer);
        await EchoedAsync(viewer, reader, ["one"u8.ToArray()], cts.Token);
        cp.Clock.Advance(TimeSpan.FromSeconds(16)); // a check while it runs: nothing happens
        await EchoedAsync(viewer, reader, ["two"u8.ToArray()], cts.Token);

        await cp.SetSessionStateAsync(session, "terminated");
        cp.Clock.Advance(TimeSpan.FromSeconds(16));
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        reason.ShouldBe("The session is no longer running.");
        await WaitUntilAsync(() => echo.OpenConnections == 0);
    }

    [Fact]
    public async Task Relay_with_in_process_agent_side_unreachable_vnc_closes_the_viewer_with_a_reason()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        cp.AgentSide.Serve(session, _ => throw new IOException("connection refused"));

        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.InternalServerError);
        reason.ShouldNotBeNull().ShouldContain("could not connect");
    }

    [Fact]
    public async Task Relay_agent_that_never_dials_back_closes_the_viewer_after_the_rendezvous_timeout()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId); // no endpoint registered: the "agent" stays silent

        var started = DateTime.UtcNow;
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        reason.ShouldNotBeNull().ShouldContain("did not open the stream");
        (DateTime.UtcNow - started).ShouldBeGreaterThan(TimeSpan.FromSeconds(1.5)); // the fixture's 2 s rendezvous
        await WaitUntilAsync(() => cp.App.Services.GetRequiredService<StreamRendezvous>().PendingCount == 0);
    }

    [Fact]
    public async Task Relay_agent_data_endpoint_needs_the_one_time_token_and_accepts_it_once()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId); // silent agent: the test dials the data socket itself
        var opened = cp.AgentSide.Opened.Count;
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        await WaitUntilAsync(() => cp.AgentSide.Opened.Count > opened);
        var args = cp.AgentSide.Opened.ToArray()[opened];
        args.DataPath.ShouldBe($"/api/v1/agents/streams/{args.StreamId}");

        using (var noToken = await cp.UpgradeRequestAsync(args.DataPath))
            await noToken.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        // A wrong token burns the rendezvous: the right one no longer works either (no guessing).
        // (The first character is replaced by a different one: a token that starts with 'x' must not turn into itself.)
        using (var wrong = await cp.UpgradeRequestAsync(args.DataPath, bearer: (args.Token[0] == 'x' ? "y" : "x") + args.Token[1..]))
            await wrong.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        using (var right = await cp.UpgradeRequestAsync(args.DataPath, bearer: args.Token))
            await right.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        var (status, _) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
    }

    [Fact]
    public async Task Relay_records_viewer_input_as_session_activity_in_batches()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        using var cts = new CancellationTokenSource(Timeout);

        var reader = new StreamingWebSocketReader(viewer);
        await EchoedAsync(viewer, reader, Handshake, cts.Token);
        var inputAt = cp.Clock.GetUtcNow();
        await EchoedAsync(viewer, reader, [KeyEvent], cts.Token);
        (await LastActivityAsync(session)).ShouldBeNull(); // not written per key press
        cp.Clock.Advance(TimeSpan.FromSeconds(5)); // the flush interval
        await WaitUntilAsync(async () => await LastActivityAsync(session) is not null);
        (await LastActivityAsync(session))!.Value.ShouldBe(inputAt, TimeSpan.FromMilliseconds(1));
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
    }

    [Fact]
    public async Task Relay_counts_only_input_as_activity_not_the_handshake_update_requests_or_fences()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var watched = await cp.CreateSessionAsync(aliceId);
        var typed = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(watched, echo.ConnectAsync);
        cp.AgentSide.Serve(typed, echo.ConnectAsync);
        using var cts = new CancellationTokenSource(Timeout);
        using var watching = await cp.ConnectViewerAsync(alice, watched);
        using var typing = await cp.ConnectViewerAsync(alice, typed);
        var watchingReader = new StreamingWebSocketReader(watching);
        var typingReader = new StreamingWebSocketReader(typing);

        // What noVNC sends by itself while the screen changes (each message echoed back, so the relay has seen it).
        await EchoedAsync(watching, watchingReader, Handshake, cts.Token);
        byte[] setEncodings = [2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xfc];
        byte[] updateRequest = [3, 1, 0, 0, 0, 0, 4, 0, 3, 0];
        byte[] fence = [248, 0, 0, 0, 0x80, 0, 0, 0x03, 0];
        byte[] continuousUpdates = [150, 1, 0, 0, 0, 0, 4, 0, 3, 0];
        byte[] setDesktopSize = [251, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0];
        byte[] clipboardCaps = [6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0, 0x10, 0];
        await EchoedAsync(watching, watchingReader, [setEncodings, updateRequest, fence, continuousUpdates, setDesktopSize, clipboardCaps, fence, updateRequest], cts.Token);
        // The other session's viewer types: its time is written by the same flush.
        await EchoedAsync(typing, typingReader, Handshake, cts.Token);
        var inputAt = cp.Clock.GetUtcNow();
        await EchoedAsync(typing, typingReader, [KeyEvent], cts.Token);

        cp.Clock.Advance(TimeSpan.FromSeconds(5)); // the flush interval: one flush, one transaction for both sessions
        await WaitUntilAsync(async () => await LastActivityAsync(typed) is not null);
        (await LastActivityAsync(typed))!.Value.ShouldBe(inputAt, TimeSpan.FromMilliseconds(1));
        (await LastActivityAsync(watched)).ShouldBeNull("a viewer that only watches leaves the session idle");

        // Then a key press and a pointer move on the watched session count.
        var keyAt = cp.Clock.GetUtcNow();
        await EchoedAsync(watching, watchingReader, [KeyEvent, PointerEvent, updateRequest], cts.Token);
        cp.Clock.Advance(TimeSpan.FromSeconds(5));
        await WaitUntilAsync(async () => await LastActivityAsync(watched) is not null);
        (await LastActivityAsync(watched))!.Value.ShouldBe(keyAt, TimeSpan.FromMilliseconds(1));
        await watching.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
        await typing.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
    }

    /// <summary>A viewer's side of an RFB 3.8 handshake with security type None: ProtocolVersion, the type, ClientInit.</summary>
    private static readonly byte[][] Handshake = ["RFB 003.008\n"u8.ToArray(), [1], [1]];
    private static readonly byte[] KeyEvent = [4, 1, 0, 0, 0, 0, 0, 0x41];
    private static readonly byte[] PointerEvent = [5, 0, 0, 10, 0, 20];

    /// <summary>Sends each message as a WebSocket message of its own (as noVNC does) and reads its echo.</summary>
    private static async Task EchoedAsync(ClientWebSocket viewer, StreamingWebSocketReader reader, byte[][] messages, CancellationToken ct)
    {
        foreach (var message in messages)
        {
            await viewer.SendAsync(message, WebSocketMessageType.Binary, true, ct);
            (await reader.ReadExactAsync(message.Length, ct)).ShouldBe(message);
        }
    }

    private async Task<DateTimeOffset?> LastActivityAsync(string session)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return await conn.ExecuteScalarAsync<DateTimeOffset?>("SELECT last_activity_at FROM sessions WHERE id = @session", new { session });
    }

    internal static Task WaitUntilAsync(Func<bool> condition) => WaitUntilAsync(() => Task.FromResult(condition()));

    internal static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition not met within " + Timeout);
            await Task.Delay(50);
        }
    }
}
