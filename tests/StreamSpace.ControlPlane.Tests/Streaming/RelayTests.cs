using System.Net;
using System.Net.WebSockets;
using Dapper;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;

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

        var inputAt = cp.Clock.GetUtcNow();
        await viewer.SendAsync(new byte[] { 4, 1, 0, 0, 0, 0, 0, 0x41 }, WebSocketMessageType.Binary, true, cts.Token); // a KeyEvent
        await new StreamingWebSocketReader(viewer).ReadExactAsync(8, cts.Token);
        (await LastActivityAsync(session)).ShouldBeNull(); // not written per key press
        cp.Clock.Advance(TimeSpan.FromSeconds(5)); // the flush interval
        await WaitUntilAsync(async () => await LastActivityAsync(session) is not null);
        (await LastActivityAsync(session))!.Value.ShouldBe(inputAt, TimeSpan.FromMilliseconds(1));
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
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
