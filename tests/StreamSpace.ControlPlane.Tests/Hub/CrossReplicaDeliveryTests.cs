using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Two control-plane replicas on one PostgreSQL database (design §9), both with a delivery poll of 5 minutes, so only
/// the LISTEN/NOTIFY wake-up can bring a command written on replica A to an agent connected to replica B in seconds.
/// </summary>
public sealed class TwoReplicaControlPlane() : HubControlPlane(DatabaseKind.Postgres)
{
    private const string SlowPoll = "--StreamSpace:CommandPollInterval=00:05:00";

    protected override IEnumerable<string> ExtraArgs => [.. base.ExtraArgs, SlowPoll];

    public WebApplication ReplicaB { get; private set; } = null!;
    public Uri ReplicaBAddress { get; private set; } = null!;

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        (ReplicaB, ReplicaBAddress) = await StartReplicaAsync();
    }

    private readonly List<string> _hostFolders = [];

    /// <summary>Another replica with the embedded agent (default id), as on a host of its own: its own data folder, so its own agent state.</summary>
    public async Task<WebApplication> StartWithEmbeddedAgentAsync(string host, params string[] extraArgs)
    {
        var data = Directory.CreateDirectory($"{DataFolder}-{host}").FullName;
        if (!_hostFolders.Contains(data)) _hostFolders.Add(data);
        return (await StartReplicaAsync(["--StreamSpace:EmbeddedAgent=true", $"--StreamSpace:DataFolder={data}", .. extraArgs])).App;
    }

    public Task StopAsync(WebApplication replica) => StopReplicaAsync(replica);

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var data in _hostFolders)
        {
            try { Directory.Delete(data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}

[Trait("Category", "Timing")]
public sealed class CrossReplicaDeliveryTests_Postgres(TwoReplicaControlPlane cp) : IClassFixture<TwoReplicaControlPlane>
{
    [Fact]
    public async Task A_command_written_on_one_replica_reaches_the_agent_on_another_at_once_not_at_the_next_poll()
    {
        var (agent, sessionId) = await AgentOnReplicaBWithASessionAsync("xrep");
        await using var _ = agent;
        var metricsB = cp.ReplicaB.Services.GetRequiredService<HubMetrics>();
        var before = metricsB.CommandWakeUps;

        // Replica A takes the request and writes the stop command; the agent's socket is on replica B.
        await DeleteOnReplicaAAsync(sessionId);

        var command = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(5));
        command.Type.ShouldBe(CommandTypes.SessionStop);
        command.SessionId.ShouldBe(sessionId);
        metricsB.CommandWakeUps.ShouldBeGreaterThan(before);
        await agent.AckAsync(command.CommandId);
        await agent.ResultAsync(command.CommandId, success: true);

        // Once replica B has applied that result (nothing else then wakes its delivery for this agent), a create on
        // replica A: its start command is written with the session, in the same statement batch.
        await HubControlPlane.EventuallyAsync(
            async () => await cp.ScalarAsync<string>("SELECT state FROM sessions WHERE id = @sessionId", new { sessionId }) == "terminated",
            TimeSpan.FromSeconds(10), $"replica B applied the stop of {sessionId}");
        await Task.Delay(200, TestContext.Current.CancellationToken);
        var admin = await cp.AdminClientAsync();
        using (var create = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken))
            create.StatusCode.ShouldBe(HttpStatusCode.Created, await create.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        var start = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(5));
        start.Type.ShouldBe(CommandTypes.SessionStart);
    }

    [Fact]
    public async Task A_listener_whose_connection_died_listens_again_and_delivers_what_it_missed()
    {
        var (agent, sessionId) = await AgentOnReplicaBWithASessionAsync("xrelisten");
        await using var _ = agent;

        // Both replicas' LISTEN connections are cut (as a database restart or a proxy would), then A writes a command.
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
            (await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn,
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"))
                .ShouldBe(2, "one listener per replica");
        await DeleteOnReplicaAAsync(sessionId);

        // The notification may have gone to nobody; the listener's return delivers everything due (the poll is 5 min).
        var command = await agent.ExpectCommandAsync(TimeSpan.FromSeconds(10));
        command.Type.ShouldBe(CommandTypes.SessionStop);
        command.SessionId.ShouldBe(sessionId);
    }

    [Fact]
    public async Task A_command_another_replica_expired_is_forgotten_by_the_connection_that_carried_it_when_its_late_result_comes()
    {
        var ct = TestContext.Current.CancellationToken;
        var (agent, sessionId) = await AgentOnReplicaBWithASessionAsync("xexpire");
        await using var _ = agent;
        var connection = cp.ReplicaB.Services.GetRequiredService<AgentConnectionRegistry>().Find(agent.AgentId)!;

        // Replica A writes a command; replica B carries it to the agent, which acks it but answers only after it expired.
        var commandId = await cp.EnqueueAsync(agent.AgentId, sessionId, CommandTypes.StreamOpen, new { sessionId, streamId = "late" });
        (await agent.ExpectCommandAsync(TimeSpan.FromSeconds(5))).CommandId.ShouldBe(commandId);
        await agent.AckAsync(commandId);
        // The ack is applied in the background: expiring before it lands would race it (the expiry's compare-and-set loses).
        await HubControlPlane.EventuallyAsync(async () => (await cp.CommandRowAsync(commandId)).State == Commands.CommandState.Acked,
            TimeSpan.FromSeconds(5), "the ack applied");
        await cp.ExecuteAsync("UPDATE agent_commands SET expires_at = @at WHERE id = @commandId", new { at = DateTimeOffset.UtcNow, commandId });
        // Replica A's expiry pass finds it: the connection that remembers it is on replica B, out of its reach.
        await cp.App.Services.GetRequiredService<Commands.CommandDelivery>().ExpireAsync(ct);
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(Commands.CommandState.Expired);
        connection.DeliveredCount.ShouldBe(1);

        // The late result is ignored (the command is final), and the connection forgets the command all the same.
        await agent.ResultAsync(commandId, success: true);
        await HubControlPlane.EventuallyAsync(() => Task.FromResult(connection.DeliveredCount == 0), TimeSpan.FromSeconds(5),
            "replica B's connection forgot the command whose late result it ignored");
        (await cp.CommandRowAsync(commandId)).State.ShouldBe(Commands.CommandState.Expired);
    }

    [Fact]
    public async Task A_user_disabled_on_one_replica_loses_the_token_on_the_other_at_once()
    {
        var (_, id, token) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("xrepuser"));
        using var onB = new HttpClient { BaseAddress = cp.ReplicaBAddress };
        onB.DefaultRequestHeaders.Authorization = new("Bearer", token);
        await KeptUser.UntilKeptAsync(onB, cp.ReplicaB.Services.GetRequiredService<Identity.TokenUserLookup>());

        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var took = await HubControlPlane.EventuallyAsync(
            async () => (await onB.GetAsync("/api/v1/users/me")).StatusCode == HttpStatusCode.Unauthorized,
            TimeSpan.FromSeconds(3), "replica B refuses the disabled user's token");
        took.ShouldBeLessThan(Identity.TokenUserLookup.MaxAge);
    }

    [Fact]
    public async Task A_token_rotated_on_one_replica_closes_the_agents_connection_on_the_other()
    {
        var (agentId, token) = await cp.CreateAgentAsync("xrotate");
        await using var agent = await ScriptedAgent.OnlineAsync(cp.ReplicaBAddress, agentId, token);
        var admin = await cp.AdminClientAsync();
        using (var rotate = await admin.PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, TestContext.Current.CancellationToken))
            rotate.StatusCode.ShouldBe(HttpStatusCode.OK);

        // Replica A does not hold the socket: replica B's next heartbeat flush finds that the row no longer names it.
        (await agent.ClosedByServerAsync(TimeSpan.FromSeconds(5))).ShouldBe(System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation);
        (await ScriptedAgent.RefusedUpgradeStatusAsync(cp.ReplicaBAddress, agentId, token)).ShouldBe(HttpStatusCode.Unauthorized);
        (await cp.AgentRowAsync(agentId))!.Status.ShouldBe(Agents.AgentStatus.Offline);
    }

    [Fact]
    public async Task A_replica_whose_embedded_agent_has_the_id_of_one_online_elsewhere_leaves_that_agent_and_its_sessions_alone()
    {
        // ./run.sh on two hosts with one STREAMSPACE_DATABASE: both embedded agents are "local".
        var hostA = await cp.StartWithEmbeddedAgentAsync("host-a");
        WebApplication? hostB = null;
        try
        {
            await cp.AgentStatusIsAsync("local", "online", TimeSpan.FromSeconds(15));
            await cp.ExecuteAsync("UPDATE agents SET draining = @yes WHERE agent_id <> 'local'", new { yes = true });
            var admin = await cp.AdminClientAsync();
            using var created = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken);
            var sessionId = (await created.ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("id").GetString()!;
            await cp.SessionStateIsAsync(sessionId, "running", TimeSpan.FromSeconds(20));
            var before = (await cp.AgentRowAsync("local"))!;

            hostB = await cp.StartWithEmbeddedAgentAsync("host-b");
            // Long enough for a hello of B's agent, for A's agent to be found silent, and for a reconciliation pass.
            await Task.Delay(TimeSpan.FromSeconds(4), TestContext.Current.CancellationToken);

            var after = (await cp.AgentRowAsync("local"))!;
            after.Status.ShouldBe(Agents.AgentStatus.Online);
            after.ConnectionId.ShouldBe(before.ConnectionId, "host A's agent keeps its connection and its token");
            (await cp.SessionRowAsync(sessionId)).State.ShouldBe("running");

            // With an id of its own (StreamSpace__EmbeddedAgentId), host B's embedded agent runs beside host A's.
            await cp.StopAsync(hostB);
            hostB = await cp.StartWithEmbeddedAgentAsync("host-b", "--StreamSpace:EmbeddedAgentId=local-b");
            await cp.AgentStatusIsAsync("local-b", "online", TimeSpan.FromSeconds(15));
            (await cp.AgentRowAsync("local"))!.ConnectionId.ShouldBe(before.ConnectionId);

            using var deleted = await admin.DeleteAsync($"/api/v1/sessions/{sessionId}", TestContext.Current.CancellationToken);
            deleted.StatusCode.ShouldBe(HttpStatusCode.Accepted);
            await cp.SessionStateIsAsync(sessionId, "terminated", TimeSpan.FromSeconds(20));
        }
        finally
        {
            if (hostB is not null) await cp.StopAsync(hostB);
            await cp.StopAsync(hostA);
        }
    }

    [Fact]
    public async Task An_embedded_agent_whose_row_is_online_but_silent_starts_once_the_offline_timeout_passed()
    {
        // A control plane restarted after a crash: its agent's row still says online, and nothing answers for it any more.
        await cp.ExecuteAsync(
            """
            INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at,
                connection_id, last_heartbeat)
            VALUES ('local', 'old', 'online', 'process', 'local', 10, 0, false, now(), now(), 'crashed', now())
            ON CONFLICT (agent_id) DO UPDATE SET status = 'online', connection_id = 'crashed', last_heartbeat = now(), token_hash = 'old'
            """, new { });
        var restarted = await cp.StartWithEmbeddedAgentAsync("host-a");
        try
        {
            await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync("local")) is { Status: "online", ConnectionId: not "crashed" and not null },
                TimeSpan.FromSeconds(10), "the restarted control plane's embedded agent online as 'local'");
        }
        finally
        {
            await cp.StopAsync(restarted);
        }
    }

    [Fact]
    public async Task A_replica_restarted_after_a_crash_has_its_embedded_agent_back_at_once_not_after_the_offline_timeout()
    {
        // The host's first run: its embedded agent registers and keeps the hash of its token in its own state folder.
        var first = await cp.StartWithEmbeddedAgentAsync("host-c");
        await cp.AgentStatusIsAsync("local", "online", TimeSpan.FromSeconds(15));
        await cp.StopAsync(first);
        // Then SIGKILL, as it were: the row still says online with a fresh heartbeat. The heartbeat lies ahead so that the
        // other replicas' sweep (4 s here) does not end it during the test, as the production timeout (35 s) would not.
        await cp.ExecuteAsync(
            "UPDATE agents SET status = 'online', connection_id = 'crashed', last_heartbeat = now() + interval '1 minute' WHERE agent_id = 'local'",
            new { });

        var restart = Stopwatch.StartNew();
        var restarted = await cp.StartWithEmbeddedAgentAsync("host-c");
        try
        {
            await HubControlPlane.EventuallyAsync(async () => (await cp.AgentRowAsync("local")) is { Status: "online", ConnectionId: not "crashed" and not null },
                TimeSpan.FromSeconds(10), "the restarted control plane's embedded agent online as 'local' again");
            restart.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5), "its own row from before the crash is taken at once");
        }
        finally
        {
            await cp.StopAsync(restarted);
        }
    }

    /// <summary>A new agent online on replica B, with a running session placed on it.</summary>
    private async Task<(ScriptedAgent Agent, string SessionId)> AgentOnReplicaBWithASessionAsync(string prefix)
    {
        var (agentId, token) = await cp.CreateAgentAsync(prefix);
        var agent = await ScriptedAgent.OnlineAsync(cp.ReplicaBAddress, agentId, token);
        return (agent, await cp.CreateSessionAsync(agentId, "running"));
    }

    /// <summary>Deletes the session through replica A (the fixture's own app): A writes the stop command.</summary>
    private async Task DeleteOnReplicaAAsync(string sessionId)
    {
        var admin = await cp.AdminClientAsync();
        using var delete = await admin.DeleteAsync($"/api/v1/sessions/{sessionId}", TestContext.Current.CancellationToken);
        delete.StatusCode.ShouldBe(HttpStatusCode.Accepted);
    }
}
