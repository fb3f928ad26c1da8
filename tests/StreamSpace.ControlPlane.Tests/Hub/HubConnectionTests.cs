using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>Control channel authentication, handshake and liveness over real sockets (invariant 1).</summary>
public abstract class HubConnectionTests(HubControlPlane cp)
{
    private static readonly TimeSpan OneSecond = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Connect_without_a_valid_token_for_that_agent_is_401_before_any_upgrade()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var (otherId, otherToken) = await cp.CreateAgentAsync();

        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, null, null)).ShouldBe(HttpStatusCode.Unauthorized, "no credentials");
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, agentId, null)).ShouldBe(HttpStatusCode.Unauthorized, "no token");
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, agentId, AgentTokens.Generate())).ShouldBe(HttpStatusCode.Unauthorized, "wrong token");
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, agentId, otherToken)).ShouldBe(HttpStatusCode.Unauthorized, "another agent's token");
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, ControlPlaneFixture.Unique("ghost"), token)).ShouldBe(HttpStatusCode.Unauthorized, "unknown agent");
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.BaseAddress, agentId, await cp.AdminTokenAsync())).ShouldBe(HttpStatusCode.Unauthorized, "a user's JWT is not an agent token");

        // The refusal is a JSON error body, and nothing was marked online.
        var client = cp.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, AgentHubSetup.ConnectPath);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", otherToken);
        request.Headers.Add(AgentTokenAuthentication.AgentIdHeader, agentId);
        await (await client.SendAsync(request, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        (await cp.AgentRowAsync(agentId))!.Status.ShouldBe(AgentStatus.Offline);
        (await cp.AgentRowAsync(otherId))!.Status.ShouldBe(AgentStatus.Offline);
    }

    [Fact]
    public async Task A_plain_http_request_with_a_valid_token_is_400()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, AgentHubSetup.ConnectPath);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        request.Headers.Add(AgentTokenAuthentication.AgentIdHeader, agentId);
        await (await cp.Client().SendAsync(request, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Hello_marks_the_agent_online_with_a_fresh_heartbeat_at_once()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var before = DateTimeOffset.UtcNow;
        await using var agent = await cp.OnlineAgentAsync(agentId, token);

        agent.Welcome!.HeartbeatIntervalSeconds.ShouldBe(1);
        agent.Welcome.AcceptedVersion.ShouldBe(ProtocolVersion.Current);
        (await cp.AgentStatusIsAsync(agentId, AgentStatus.Online, OneSecond)).ShouldBeLessThan(OneSecond);
        var row = (await cp.AgentRowAsync(agentId))!;
        row.ConnectionId.ShouldBe(agent.Welcome.ConnectionId);
        row.LastHeartbeat.ShouldNotBeNull();
        row.LastHeartbeat.Value.ShouldBeGreaterThanOrEqualTo(before.AddMilliseconds(-50));
        (DateTimeOffset.UtcNow - row.LastHeartbeat.Value).ShouldBeLessThan(TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task Heartbeats_keep_the_row_online_and_fresh_and_carry_capacity()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        agent.ActiveSessions = 3;
        var first = (await cp.AgentRowAsync(agentId))!.LastHeartbeat!.Value;
        // Five heartbeat intervals: longer than the 3 s offline timeout, so only the heartbeats keep it online.
        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(500), TestContext.Current.CancellationToken);
            (await cp.AgentRowAsync(agentId))!.Status.ShouldBe(AgentStatus.Online);
        }
        var row = (await cp.AgentRowAsync(agentId))!;
        row.LastHeartbeat!.Value.ShouldBeGreaterThan(first);
        (DateTimeOffset.UtcNow - row.LastHeartbeat.Value).ShouldBeLessThan(TimeSpan.FromSeconds(3));
        row.ActiveSessions.ShouldBe(3);
    }

    [Fact]
    public async Task Closing_the_socket_marks_the_agent_offline_within_a_second()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var agent = await cp.OnlineAgentAsync(agentId, token);
        await cp.AgentStatusIsAsync(agentId, AgentStatus.Online, OneSecond);
        await agent.CloseAsync();
        (await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, OneSecond)).ShouldBeLessThan(OneSecond);
        (await cp.AgentRowAsync(agentId))!.ConnectionId.ShouldBeNull();
        await agent.DisposeAsync();
    }

    [Fact]
    public async Task A_crashed_agent_whose_tcp_connection_drops_is_offline_within_a_second()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var agent = await cp.OnlineAgentAsync(agentId, token);
        agent.Crash();
        // Not the 3 s silence timeout: the dropped TCP connection itself is noticed.
        (await cp.AgentStatusIsAsync(agentId, AgentStatus.Offline, OneSecond)).ShouldBeLessThan(OneSecond);
        await agent.DisposeAsync();
    }

    [Fact]
    public async Task An_agent_whose_socket_dies_while_its_online_write_waits_for_the_database_ends_offline()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agentId, token) = await cp.CreateAgentAsync("dying");
        var writer = cp.App.Services.GetRequiredService<AgentStatusWriter>();
        var agent = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
        await using (var conn = await cp.Db.OpenAsync(ct))
        {
            // A slow database: another transaction holds the agent's row (PostgreSQL) or the write lock (SQLite), so the
            // hello's online write waits in its batch; meanwhile the agent gives up (its handshake timeout) and is gone.
            await using var tx = await conn.BeginTransactionAsync(ct);
            await conn.ExecuteAsync(new CommandDefinition("UPDATE agents SET updated_at = updated_at WHERE agent_id = @agentId", new { agentId }, tx, cancellationToken: ct));
            await agent.SendHelloAsync();
            await HubControlPlane.EventuallyAsync(() => Task.FromResult(writer.HellosPending > 0), TimeSpan.FromSeconds(5), "the hello's online write is queued");
            await Task.Delay(TimeSpan.FromMilliseconds(300), ct);
            agent.Crash();
            await Task.Delay(TimeSpan.FromMilliseconds(300), ct);
            await tx.RollbackAsync(ct);
        }
        // The write commits 'online' for a connection that no longer exists: at once offline again (not ~4 s later by the sweep).
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(writer.HellosPending == 0), TimeSpan.FromSeconds(5), "the hello's online write finished");
        await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync(agentId)) is { Status: AgentStatus.Offline, ConnectionId: null },
            OneSecond, "the dead connection's agent is offline");
        await agent.DisposeAsync();
    }

    [Fact]
    public async Task Silence_longer_than_three_heartbeats_closes_the_socket_and_marks_the_agent_offline()
    {
        var (silentId, silentToken) = await cp.CreateAgentAsync("silent");
        var (liveId, liveToken) = await cp.CreateAgentAsync("live");
        await using var live = await cp.OnlineAgentAsync(liveId, liveToken);
        var helloAt = System.Diagnostics.Stopwatch.StartNew();
        await using var silent = await cp.OnlineAgentAsync(silentId, silentToken, heartbeat: false);

        await cp.AgentStatusIsAsync(silentId, AgentStatus.Offline, TimeSpan.FromSeconds(6));
        var elapsed = helloAt.Elapsed;
        elapsed.ShouldBeGreaterThan(TimeSpan.FromSeconds(3), "not before the timeout of 3 heartbeat intervals");
        elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(4), "within 3 heartbeats + 1 s");
        await silent.ClosedByServerAsync(TimeSpan.FromSeconds(2));
        (await cp.AgentRowAsync(liveId))!.Status.ShouldBe(AgentStatus.Online, "a heartbeating agent stays online");
    }

    [Fact]
    public async Task A_replacement_connection_stays_online_when_the_old_one_closes()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        var first = await cp.OnlineAgentAsync(agentId, token);
        await using var second = await cp.OnlineAgentAsync(agentId, token);
        second.Welcome!.ConnectionId.ShouldNotBe(first.Welcome!.ConnectionId);

        // The hub closes the replaced socket itself; the old side closing too must change nothing.
        await first.ClosedByServerAsync(TimeSpan.FromSeconds(3));
        await first.CloseAsync();
        await first.DisposeAsync();
        await Task.Delay(TimeSpan.FromMilliseconds(1500), TestContext.Current.CancellationToken);

        var row = (await cp.AgentRowAsync(agentId))!;
        row.Status.ShouldBe(AgentStatus.Online);
        row.ConnectionId.ShouldBe(second.Welcome.ConnectionId);
        second.IsOpen.ShouldBeTrue();

        // And the replacement is the one that gets commands.
        var sessionId = await cp.CreateSessionAsync(agentId, "pending");
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStop);
        (await second.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
    }

    [Fact]
    public async Task An_admin_drain_survives_heartbeats_and_an_agent_can_report_draining_itself()
    {
        var (drainedId, drainedToken) = await cp.CreateAgentAsync("drained");
        await using var drained = await cp.OnlineAgentAsync(drainedId, drainedToken);
        await cp.ExecuteAsync("UPDATE agents SET draining = @yes WHERE agent_id = @drainedId", new { yes = true, drainedId });
        var before = (await cp.AgentRowAsync(drainedId))!.LastHeartbeat!.Value;
        await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync(drainedId))!.LastHeartbeat > before, TimeSpan.FromSeconds(5), "a heartbeat was flushed");
        (await cp.AgentRowAsync(drainedId))!.Draining.ShouldBeTrue("a heartbeat saying 'not draining' must not undo an admin drain");

        var (selfId, selfToken) = await cp.CreateAgentAsync("selfdrain");
        await using var self = await cp.OnlineAgentAsync(selfId, selfToken, heartbeat: false);
        await self.SendAsync(MessageTypes.Heartbeat, new HeartbeatPayload { ActiveSessions = 0, MaxSessions = 10, Draining = true });
        await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync(selfId))!.AgentDraining, TimeSpan.FromSeconds(5), "the agent's own drain flag was written");
        (await cp.AgentRowAsync(selfId))!.Draining.ShouldBeFalse("the agent's own drain is kept apart from an admin's");
    }

    [Fact]
    public async Task The_agents_word_on_session_limits_reaches_the_agents_list_and_an_overlong_one_is_refused()
    {
        var (agentId, token) = await cp.CreateAgentAsync("limits");
        await using (var agent = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token))
        {
            (await agent.HelloAsync(sessionLimits: "not enforced: the agent does not run as root")).ShouldNotBeNull();
            var admin = await cp.AdminClientAsync();
            var agents = await admin.GetFromJsonAsync<JsonElement>("/api/v1/agents", TestContext.Current.CancellationToken);
            agents.EnumerateArray().Single(a => a.GetProperty("agentId").GetString() == agentId)
                .GetProperty("sessionLimits").GetString().ShouldBe("not enforced: the agent does not run as root");
        }

        var (badId, badToken) = await cp.CreateAgentAsync("limits-long");
        await using var bad = await ScriptedAgent.ConnectAsync(cp.BaseAddress, badId, badToken);
        (await bad.HelloAsync(sessionLimits: new string('x', HelloPayload.MaxSessionLimitsLength + 1))).ShouldBeNull();
        bad.Refusal.ShouldBe(new RefusedPayload { Code = "invalid_hello", Reason = "sessionLimits must be at most 300 characters" });
        (await cp.AgentRowAsync(badId))!.Status.ShouldBe(AgentStatus.Offline);
    }

    [Fact]
    public async Task Hub_metrics_are_exported()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        await agent.HeartbeatAsync();
        var sessionId = await cp.CreateSessionAsync(agentId, "pending");
        var commandId = await cp.EnqueueAsync(agentId, sessionId, CommandTypes.SessionStart);
        (await agent.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        string text = "";
        await HubControlPlane.EventuallyAsync(async () =>
        {
            text = await cp.Client().GetStringAsync("/metrics", TestContext.Current.CancellationToken);
            return text.Contains("streamspace_agents_connected", StringComparison.Ordinal)
                && text.Contains("streamspace_agent_heartbeats", StringComparison.Ordinal)
                && text.Contains("streamspace_commands_sent", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(10), "the hub instruments appear on /metrics");
    }

    [Fact]
    public async Task Deleting_the_agent_row_closes_its_socket()
    {
        var (agentId, token) = await cp.CreateAgentAsync();
        await using var agent = await cp.OnlineAgentAsync(agentId, token);
        await cp.ExecuteAsync("DELETE FROM agents WHERE agent_id = @agentId", new { agentId });
        await agent.ClosedByServerAsync(TimeSpan.FromSeconds(4));
    }
}

[Trait("Category", "Timing")]
public sealed class HubConnectionTests_Sqlite(HubSqliteControlPlane cp) : HubConnectionTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class HubConnectionTests_Postgres(HubPostgresControlPlane cp) : HubConnectionTests(cp), IClassFixture<HubPostgresControlPlane>;
