using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Diagnostics;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// The real control plane with hub timings shortened so liveness and redelivery are observable in
/// seconds: heartbeat 1 s (offline after 3 s of silence), ack timeout 1 s, hello timeout 2 s,
/// reconciliation every 2 s.
/// </summary>
// The hub tests run with 1-second heartbeats and ack timeouts and assert bounds on them: their classes
// carry [Trait("Category", "Timing")] so ./test.sh runs them after the parallel tiers, alone.
public abstract class HubControlPlane(DatabaseKind kind) : ControlPlaneFixture(kind)
{
    protected override IEnumerable<string> ExtraArgs =>
    [
        "--StreamSpace:HeartbeatSeconds=1",
        "--StreamSpace:CommandAckTimeout=00:00:01",
        "--StreamSpace:CommandBackoffMaxFactor=1",
        "--StreamSpace:OfflineSweepInterval=00:00:01",
        "--StreamSpace:OfflineSweepGrace=00:00:01",
        "--StreamSpace:HelloTimeout=00:00:02",
        "--StreamSpace:ReconcileInterval=00:00:02",
    ];

    public HubMetrics Metrics => App.Services.GetRequiredService<HubMetrics>();

    private string? _userId;
    private readonly string _username = Unique("hubuser");

    /// <summary>Registers an agent directly in the agents table (the admin API is built elsewhere) and returns its token.</summary>
    public async Task<(string AgentId, string Token)> CreateAgentAsync(string prefix = "agent", int maxSessions = 10, string region = "default")
    {
        var agentId = Unique(prefix);
        var token = AgentTokens.Generate();
        var now = DateTimeOffset.UtcNow;
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
            VALUES (@agentId, @hash, @offline, 'process', @region, @maxSessions, 0, @no, @now, @now)
            """,
            new { agentId, hash = AgentTokens.Hash(token), offline = AgentStatus.Offline, region, maxSessions, no = false, now });
        return (agentId, token);
    }

    public Task<ScriptedAgent> OnlineAgentAsync(string agentId, string token, IReadOnlyList<Protocol.SessionInventoryItem>? inventory = null, bool heartbeat = true) =>
        ScriptedAgent.OnlineAsync(BaseAddress, agentId, token, inventory, heartbeat);

    /// <summary>Inserts a session row placed on <paramref name="agentId"/> in <paramref name="state"/>.</summary>
    public async Task<string> CreateSessionAsync(string agentId, string state)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        var now = DateTimeOffset.UtcNow;
        if (_userId is null)
        {
            var id = Guid.NewGuid().ToString("N");
            await conn.ExecuteAsync(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES (@id, @username, 'not-a-real-hash', 'user', @no, 100, 1, @now, @now)
                """,
                new { id, username = _username, no = false, now });
            _userId = id;
        }
        // 12 hex digits, not the product's 6 letters: every hub test class adds its sessions for this one user, and with
        // 6 hex digits two of them met (PK_sessions) in a full run.
        var sessionId = $"{_username}-xterm-{Guid.NewGuid().ToString("N")[..12]}";
        await conn.ExecuteAsync(
            """
            INSERT INTO sessions (id, user_id, username, template, state, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@sessionId, @userId, @username, 'xterm', @state, @agentId, '500m', '512Mi', @no, @now, @now)
            """,
            new { sessionId, userId = _userId, username = _username, state, agentId, no = false, now });
        return sessionId;
    }

    /// <summary>Writes a command through the real outbox (as the sessions API does) and signals delivery.</summary>
    public async Task<string> EnqueueAsync(string agentId, string? sessionId, string type, object? args = null, TimeSpan? ttl = null)
    {
        var outbox = App.Services.GetRequiredService<CommandOutbox>();
        var id = await Db.InTransactionAsync((conn, tx) =>
            outbox.EnqueueAsync(conn, tx, agentId, sessionId, type, args ?? new { sessionId }, CancellationToken.None, ttl), CancellationToken.None);
        outbox.NotifyQueued(agentId);
        return id;
    }

    /// <summary>
    /// Writes a command the way a session create does (hand-off on: claimed when the agent is connected here) and,
    /// unless <paramref name="notify"/> is false (a crash between the commit and the send), hands it to delivery.
    /// </summary>
    public async Task<CommandRow> WriteHandedOffAsync(string agentId, string sessionId, string type, bool notify = true)
    {
        var outbox = App.Services.GetRequiredService<CommandOutbox>();
        var written = await Db.InTransactionAsync((conn, tx) =>
            outbox.WriteManyAsync(conn, tx, [new NewCommand(agentId, sessionId, type, new { sessionId })], CancellationToken.None, handOff: outbox.NewHandOff()),
            CancellationToken.None);
        if (notify) outbox.NotifyWritten(written);
        return written.Rows.Single();
    }

    public async Task<AgentRow?> AgentRowAsync(string agentId)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return await conn.QuerySingleOrDefaultAsync<AgentRow>(
            "SELECT status AS Status, last_heartbeat AS LastHeartbeat, connection_id AS ConnectionId, draining AS Draining, agent_draining AS AgentDraining, active_sessions AS ActiveSessions FROM agents WHERE agent_id = @agentId",
            new { agentId });
    }

    public async Task<SessionRow> SessionRowAsync(string sessionId)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return await conn.QuerySingleAsync<SessionRow>(
            "SELECT state AS State, state_reason AS Reason FROM sessions WHERE id = @sessionId", new { sessionId });
    }

    public async Task<CommandStateRow> CommandRowAsync(string commandId)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return await conn.QuerySingleAsync<CommandStateRow>(
            "SELECT state AS State, attempts AS Attempts, error AS Error, expires_at AS ExpiresAt FROM agent_commands WHERE id = @commandId", new { commandId });
    }

    public async Task<IReadOnlyList<CommandStateRow>> CommandsForSessionAsync(string sessionId)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return (await conn.QueryAsync<CommandStateRow>(
            "SELECT id AS Id, type AS Type, state AS State, attempts AS Attempts, error AS Error FROM agent_commands WHERE session_id = @sessionId ORDER BY created_at",
            new { sessionId })).ToList();
    }

    public async Task ExecuteAsync(string sql, object args)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(sql, args);
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; returns how long it took, failing after <paramref name="timeout"/>.</summary>
    /// <summary>
    /// An agent sends a report the hub must refuse (<paramref name="sendBad"/>) while another agent completes a start
    /// command: the first is closed with 1008, the other's report is applied and it stays online.
    /// </summary>
    public async Task BadReportClosesOnlyThatAgentAsync(string label, Func<ScriptedAgent, Task> sendBad)
    {
        var soon = TimeSpan.FromSeconds(5);
        var (bystanderId, bystanderToken) = await CreateAgentAsync("bystander");
        await using var bystander = await OnlineAgentAsync(bystanderId, bystanderToken);
        var (badId, badToken) = await CreateAgentAsync(label);
        await using var bad = await OnlineAgentAsync(badId, badToken);
        var sessionId = await CreateSessionAsync(bystanderId, Sessions.SessionState.Pending);
        var commandId = await EnqueueAsync(bystanderId, sessionId, Protocol.CommandTypes.SessionStart);
        (await bystander.ExpectCommandAsync()).CommandId.ShouldBe(commandId);

        await sendBad(bad);
        await bystander.AckAsync(commandId);
        await bystander.ResultAsync(commandId, success: true);

        (await bad.ClosedByServerAsync(soon)).ShouldBe(System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation);
        await SessionStateIsAsync(sessionId, Sessions.SessionState.Running, soon);
        bystander.IsOpen.ShouldBeTrue();
        (await AgentRowAsync(bystanderId))!.Status.ShouldBe(AgentStatus.Online);
    }

    public static async Task<TimeSpan> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout, string because)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            if (await condition()) return watch.Elapsed;
            if (watch.Elapsed > timeout) throw new ShouldAssertException($"not within {timeout}: {because}");
            await Task.Delay(50);
        }
    }

    public Task<TimeSpan> AgentStatusIsAsync(string agentId, string status, TimeSpan timeout) =>
        EventuallyAsync(async () => (await AgentRowAsync(agentId))?.Status == status, timeout, $"agent {agentId} {status}");

    public Task<TimeSpan> SessionStateIsAsync(string sessionId, string state, TimeSpan timeout) =>
        EventuallyAsync(async () => (await SessionRowAsync(sessionId)).State == state, timeout, $"session {sessionId} {state}");

    /// <summary>The agent as <c>GET /api/v1/agents/{agentId}</c> shows it to an admin.</summary>
    public async Task<JsonElement> AgentJsonAsync(string agentId)
    {
        var admin = await AdminClientAsync();
        return await (await admin.GetAsync($"/api/v1/agents/{agentId}", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
    }

    /// <summary>
    /// Creates a session through the API with every other agent drained by an admin (a test class has its control plane
    /// to itself), so placement can choose only <paramref name="agentId"/>: returns the agent chosen, or why this one was not.
    /// </summary>
    public async Task<string> PlaceOnlyOnAsync(string agentId)
    {
        await ExecuteAsync("UPDATE agents SET draining = @yes WHERE agent_id <> @agentId", new { yes = true, agentId });
        var (client, _, _) = await this.QuickUserAsync("placed");
        using var response = await client.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken);
        if (response.StatusCode == HttpStatusCode.Created)
            return (await response.ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("agentId").GetString()!;
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
        return error.GetProperty("reasons").EnumerateArray()
            .Single(r => r.GetProperty("agentId").GetString() == agentId).GetProperty("reason").GetString()!;
    }
}

public sealed record AgentRow
{
    public required string Status { get; init; }
    public DateTimeOffset? LastHeartbeat { get; init; }
    public string? ConnectionId { get; init; }
    /// <summary>An admin's drain.</summary>
    public bool Draining { get; init; }
    /// <summary>The agent's own drain, from its last hello or heartbeat.</summary>
    public bool AgentDraining { get; init; }
    public int ActiveSessions { get; init; }
}

public sealed record SessionRow
{
    public required string State { get; init; }
    public string? Reason { get; init; }
}

public sealed record CommandStateRow
{
    public string? Id { get; init; }
    public string? Type { get; init; }
    public required string State { get; init; }
    public int Attempts { get; init; }
    public string? Error { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
}

public sealed class HubSqliteControlPlane() : HubControlPlane(DatabaseKind.Sqlite);

public sealed class HubPostgresControlPlane() : HubControlPlane(DatabaseKind.Postgres);
