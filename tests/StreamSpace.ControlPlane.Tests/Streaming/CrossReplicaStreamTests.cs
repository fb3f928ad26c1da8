using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Dapper;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// Two replicas on one PostgreSQL database, each with its own address (<c>Streaming:ReplicaUrl</c>), as pods behind one
/// Service would be. The agent's control-plane URL leads to replica B; the viewer waits on replica A.
/// </summary>
public sealed class TwoReplicaStreamingControlPlane() : ControlPlaneFixture(DatabaseKind.Postgres)
{
    private readonly int _portA = FreePort();
    private readonly int _portB = FreePort();

    public Uri ReplicaBAddress => new($"http://127.0.0.1:{_portB}");
    public WebApplication ReplicaB { get; private set; } = null!;

    protected override IEnumerable<string> ExtraArgs => ReplicaArgs(_portA);

    private static string[] ReplicaArgs(int port) =>
    [
        "--urls", $"http://127.0.0.1:{port}",
        $"--StreamSpace:Streaming:ReplicaUrl=http://127.0.0.1:{port}",
        "--StreamSpace:Streaming:RendezvousTimeout=00:00:05",
    ];

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        (ReplicaB, _) = await StartReplicaAsync(ReplicaArgs(_portB));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

public sealed class CrossReplicaStreamTests_Postgres(TwoReplicaStreamingControlPlane cp) : IClassFixture<TwoReplicaStreamingControlPlane>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_viewer_on_one_replica_is_relayed_by_an_agent_whose_control_plane_url_leads_to_another()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId, agentId: ControlPlaneFixture.Unique("agent-"));
        await using var echo = StreamingTestServer.Echo();

        // The viewer waits on replica A (the fixture's own app).
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        StreamOpenArgs? args = null;
        await RelayTests.WaitUntilAsync(async () => (args = await StreamOpenArgsAsync(session)) is not null);
        args!.DataUrl.ShouldBe($"{cp.BaseAddress.ToString().TrimEnd('/')}/api/v1/agents/streams/{args.StreamId}");

        // The agent follows the command as the real agent does, with B as its control-plane URL.
        var bridge = StreamBridge.RunAsync(cp.ReplicaBAddress, args, echo.ConnectAsync, StreamingTestData.Log, CancellationToken.None);
        await StreamingTestData.EchoesAndClosesAsync(viewer, bridge, "hello across replicas", Timeout);
    }

    private async Task<StreamOpenArgs?> StreamOpenArgsAsync(string session)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        var payload = await conn.QuerySingleOrDefaultAsync<string>(
            "SELECT payload FROM agent_commands WHERE session_id = @session AND type = 'stream.open'", new { session });
        return payload is null ? null : JsonSerializer.Deserialize<StreamOpenArgs>(payload, ProtocolJson.Options);
    }
}
