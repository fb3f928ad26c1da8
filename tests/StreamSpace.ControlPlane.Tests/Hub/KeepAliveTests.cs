using System.Diagnostics;
using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.ControlPlane.Tests.Streaming;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>Keep-alive pings every second, unanswered for a second = dead; agents' heartbeats every 60 s (offline after 180 s).</summary>
public abstract class KeepAliveHubControlPlane(DatabaseKind kind) : HubControlPlane(kind)
{
    public static readonly string[] KeepAliveArgs =
        ["--StreamSpace:WebSocketKeepAliveInterval=00:00:01", "--StreamSpace:WebSocketKeepAliveTimeout=00:00:01"];

    protected override IEnumerable<string> ExtraArgs => [.. base.ExtraArgs, "--StreamSpace:HeartbeatSeconds=60", .. KeepAliveArgs];
}

public sealed class KeepAliveHubSqliteControlPlane() : KeepAliveHubControlPlane(DatabaseKind.Sqlite);
public sealed class KeepAliveHubPostgresControlPlane() : KeepAliveHubControlPlane(DatabaseKind.Postgres);

/// <summary>
/// Invariant 1 for a peer that vanishes without closing (host without power, a network that drops everything): the
/// control plane's WebSocket pings go unanswered and it aborts its side within interval + timeout, long before the
/// agent's heartbeat timeout; a quiet but healthy agent answers the pings and stays.
/// </summary>
public abstract class KeepAliveTests(KeepAliveHubControlPlane cp)
{
    [Fact]
    public async Task An_agent_behind_a_network_that_drops_everything_is_offline_within_the_keep_alive_timeout()
    {
        var (agentId, token) = await cp.CreateAgentAsync("vanishing");
        var (quietId, quietToken) = await cp.CreateAgentAsync("quiet");
        await using var proxy = new TcpProxy("127.0.0.1", cp.BaseAddress.Port);
        await using var agent = await ScriptedAgent.OnlineAsync(new Uri($"http://127.0.0.1:{proxy.Port}"), agentId, token);
        await using var quiet = await cp.OnlineAgentAsync(quietId, quietToken);
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Online, TimeSpan.FromSeconds(1));

        proxy.BlackHole();
        var elapsed = await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, TimeSpan.FromSeconds(6));
        elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(4), "within a ping interval plus the timeout (and a ping in flight)");
        (await cp.AgentRowAsync(quietId))!.Status.ShouldBe(AgentStatus.Online, "an agent that answers the pings stays, heartbeats or not");
        quiet.IsOpen.ShouldBeTrue();
    }
}

[Trait("Category", "Timing")]
public sealed class KeepAliveTests_Sqlite(KeepAliveHubSqliteControlPlane cp) : KeepAliveTests(cp), IClassFixture<KeepAliveHubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class KeepAliveTests_Postgres(KeepAliveHubPostgresControlPlane cp) : KeepAliveTests(cp), IClassFixture<KeepAliveHubPostgresControlPlane>;

/// <summary>The relay (in-process agent side) with keep-alive pings every second, unanswered for a second = dead.</summary>
public sealed class KeepAliveStreamingControlPlane() : StreamingControlPlane(DatabaseKind.Sqlite)
{
    protected override IEnumerable<string> ExtraArgs => [.. base.ExtraArgs, .. KeepAliveHubControlPlane.KeepAliveArgs];
}

/// <summary>A viewer whose laptop went to sleep: its stream, and the agent's bridge behind it, end within the keep-alive timeout.</summary>
[Trait("Category", "Timing")]
public sealed class ViewerKeepAliveTests(KeepAliveStreamingControlPlane cp) : IClassFixture<KeepAliveStreamingControlPlane>
{
    [Fact]
    public async Task A_viewer_behind_a_network_that_drops_everything_ends_its_stream_and_the_agents_bridge()
    {
        var ct = TestContext.Current.CancellationToken;
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        var bridgesBefore = cp.AgentSide.Bridges.Count;
        await using var proxy = new TcpProxy("127.0.0.1", cp.BaseAddress.Port);
        var (_, url) = await alice.TicketAsync(session);
        using var viewer = new ClientWebSocket();
        viewer.Options.AddSubProtocol("binary");
        await viewer.ConnectAsync(new Uri(new Uri($"ws://127.0.0.1:{proxy.Port}"), url), ct);
        var message = "RFB 003.008\n"u8.ToArray();
        await viewer.SendAsync(message, WebSocketMessageType.Binary, true, ct);
        (await new StreamingWebSocketReader(viewer).ReadExactAsync(message.Length, ct)).ShouldBe(message);
        var bridge = cp.AgentSide.Bridges.ToArray()[bridgesBefore];

        proxy.BlackHole();
        var watch = Stopwatch.StartNew();
        await bridge.WaitAsync(TimeSpan.FromSeconds(8), ct);
        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5), "within a ping interval plus the timeout (and a ping in flight)");
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(echo.OpenConnections == 0), TimeSpan.FromSeconds(2), "the session's VNC connection is closed");
    }
}
