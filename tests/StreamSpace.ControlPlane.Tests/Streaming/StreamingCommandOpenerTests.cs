using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using Dapper;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// The production opener: a viewer's stream becomes a durable <c>stream.open</c> command with a short TTL
/// for the session's agent, and an agent that follows it (here: the test, reading the command from the
/// outbox since the hub is another branch) gets the stream relayed.
/// </summary>
public sealed class StreamingCommandOpenerTests(StreamingCommandOpenerControlPlane cp) : IClassFixture<StreamingCommandOpenerControlPlane>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_viewer_enqueues_stream_open_for_the_sessions_agent_and_the_agent_following_it_is_relayed()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var agentId = ControlPlaneFixture.Unique("agent-");
        var session = await cp.CreateSessionAsync(aliceId, agentId: agentId);
        var notified = new ConcurrentQueue<string>();
        cp.App.Services.GetRequiredService<CommandOutbox>().Queued += notified.Enqueue;
        await using var echo = StreamingTestServer.Echo();

        using var viewer = await cp.ConnectViewerAsync(alice, session);
        CommandRow? command = null;
        await RelayTests.WaitUntilAsync(async () => (command = await StreamOpenCommandAsync(session)) is not null);
        command!.AgentId.ShouldBe(agentId);
        command.State.ShouldBe(CommandState.Pending);
        (command.ExpiresAt - command.CreatedAt).ShouldBe(TimeSpan.FromSeconds(30));
        notified.ShouldContain(agentId);
        var args = JsonSerializer.Deserialize<StreamOpenArgs>(command.Payload, ProtocolJson.Options)!;
        args.DataPath.ShouldBe($"/api/v1/agents/streams/{args.StreamId}");

        var bridge = StreamBridge.RunAsync(cp.BaseAddress, args, echo.ConnectAsync, StreamingTestData.Log, CancellationToken.None);
        await StreamingTestData.EchoesAndClosesAsync(viewer, bridge, "hello through the agent", Timeout);
    }

    [Fact]
    public async Task Without_an_agent_answering_the_viewer_is_closed_with_a_reason_after_the_rendezvous_timeout()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId, agentId: ControlPlaneFixture.Unique("agent-"));
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        reason.ShouldNotBeNull().ShouldContain("did not open the stream within 3 s");
    }

    private async Task<CommandRow?> StreamOpenCommandAsync(string session)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return await conn.QuerySingleOrDefaultAsync<CommandRow>(
            """
            SELECT agent_id AS AgentId, state AS State, payload AS Payload, created_at AS CreatedAt, expires_at AS ExpiresAt
            FROM agent_commands WHERE session_id = @session AND type = 'stream.open'
            """, new { session });
    }

    private sealed record CommandRow
    {
        public required string AgentId { get; init; }
        public required string State { get; init; }
        public required string Payload { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset ExpiresAt { get; init; }
    }
}
