using System.Net.WebSockets;
using System.Text.RegularExpressions;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents;

public sealed record CreateAgentRequest(string? AgentId, string? Platform, string? Region, int? MaxSessions);

/// <summary>The token is shown exactly once, here (or by a rotation); only its hash is stored.</summary>
public sealed record CreateAgentResponse(string AgentId, string Token);

/// <summary>Agent registration and administration (admin only). The live connection side is the agent hub.</summary>
public static partial class AgentsApi
{
    public const string DefaultRegion = "default";
    public const int DefaultMaxSessions = 10;
    public const int MaxMaxSessions = 10_000;

    [GeneratedRegex(@"^[a-z0-9][a-z0-9._-]{0,62}\z")]
    public static partial Regex AgentIdPattern();

    /// <summary>
    /// Ids that fit <see cref="AgentIdPattern"/> but name a literal route under /api/v1/agents (the hub's
    /// <c>connect</c>, the data sockets' <c>streams/{id}</c>): those routes win, so such an agent could not be administered.
    /// </summary>
    public static readonly IReadOnlySet<string> ReservedAgentIds = new HashSet<string>(StringComparer.Ordinal) { "connect", "streams" };

    /// <summary>Why <paramref name="agentId"/> is reserved, or null if it is not.</summary>
    public static string? ReservedAgentIdReason(string agentId) => ReservedAgentIds.Contains(agentId)
        ? $"'{agentId}' is reserved: /api/v1/agents/{agentId} is a route of its own, so the agent could not be read or managed"
        : null;

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z")]
    private static partial Regex RegionPattern();

    public static IServiceCollection AddStreamSpaceAgents(this IServiceCollection services, StreamSpaceOptions options) =>
        services.AddSingleton<AgentPlacement>();

    public static IEndpointRouteBuilder MapAgentsApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/agents").WithTags("Agents").RequireAuthorization(Policies.Admin);
        group.MapPost("/", CreateAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status409Conflict, "An agent with that id is registered.");
        group.MapGet("/", ListAsync).RequireAuthorization(Policies.Admin);
        group.MapGet("/{agentId}", GetAsync).RequireAuthorization(Policies.Admin);
        group.MapPost("/{agentId}/drain", DrainAsync).RequireAuthorization(Policies.Admin);
        group.MapPost("/{agentId}/undrain", UndrainAsync).RequireAuthorization(Policies.Admin);
        group.MapPost("/{agentId}/rotate-token", RotateTokenAsync).RequireAuthorization(Policies.Admin);
        group.MapDelete("/{agentId}", DeleteAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status409Conflict, "The agent has live sessions, or sessions whose stop it has not confirmed or deleted users' homes it has not deleted (?force=true deletes anyway, except with live sessions not being stopped).");
        return routes;
    }

    public static async Task<Results<Created<CreateAgentResponse>, JsonHttpResult<ApiError>>> CreateAsync(
        CreateAgentRequest? body, HttpContext http, Db db, AuditLog audit, TimeProvider time, CancellationToken ct)
    {
        var v = new Validation();
        if (body is null) return v.Add("body", "a JSON object {agentId, platform?, region?, maxSessions?} is required").ToResult();
        if (string.IsNullOrEmpty(body.AgentId)) v.Add("agentId", "is required");
        else if (!AgentIdPattern().IsMatch(body.AgentId)) v.Add("agentId", "must be 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit");
        else if (ReservedAgentIdReason(body.AgentId) is { } reserved) v.Add("agentId", reserved);
        var platform = body.Platform ?? Platforms.Process;
        if (!Platforms.All.Contains(platform)) v.Add("platform", $"must be one of {string.Join(", ", Platforms.All)}");
        var region = body.Region ?? DefaultRegion;
        if (!RegionPattern().IsMatch(region)) v.Add("region", "must be 1-64 characters of letters, digits, '.', '_' and '-'");
        var maxSessions = body.MaxSessions ?? DefaultMaxSessions;
        if (maxSessions is < 1 or > MaxMaxSessions) v.Add("maxSessions", $"must be between 1 and {MaxMaxSessions}");
        if (!v.IsValid) return v.ToResult();

        var agentId = body.AgentId!;
        var token = AgentTokens.Generate();
        var caller = CurrentUser.From(http.User);
        var created = await db.InTransactionAsync(async (conn, tx) =>
        {
            var now = time.GetUtcNow();
            var inserted = await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO agents (agent_id, token_hash, status, last_heartbeat, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                VALUES (@agentId, @hash, @status, NULL, @platform, @region, @maxSessions, 0, @draining, @now, @now)
                ON CONFLICT (agent_id) DO NOTHING
                """,
                new { agentId, hash = AgentTokens.Hash(token), status = AgentStatus.Offline, platform, region, maxSessions, draining = false, now },
                tx, cancellationToken: ct));
            if (inserted == 0) return false;
            await audit.WriteAsync(conn, tx, caller.Username, AuditActions.AgentCreated, agentId, $"platform={platform} region={region} maxSessions={maxSessions}", http, ct);
            return true;
        }, ct);
        return created
            ? TypedResults.Created($"/api/v1/agents/{agentId}", new CreateAgentResponse(agentId, token))
            : ApiErrors.Conflict($"An agent named '{agentId}' is already registered.");
    }

    public static async Task<Ok<IReadOnlyList<AgentView>>> ListAsync(Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var rows = await conn.QueryAsync<AgentRecord>(new CommandDefinition(ListSql, cancellationToken: ct));
        return TypedResults.Ok<IReadOnlyList<AgentView>>(rows.Select(r => r.ToView()).ToList());
    }

    public static async Task<Results<Ok<AgentView>, JsonHttpResult<ApiError>>> GetAsync(string agentId, Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var agent = await FindAsync(conn, null, agentId, ct);
        return agent is null ? NotFound(agentId) : TypedResults.Ok(agent.ToView());
    }

    /// <summary>
    /// Stops new placements on the agent; its sessions keep running until they end. Idempotent. This is the admin's drain
    /// (<c>agents.draining</c>): the agent's own reports never clear it, only <see cref="UndrainAsync"/> does.
    /// </summary>
    public static Task<Results<Ok<AgentView>, JsonHttpResult<ApiError>>> DrainAsync(
        string agentId, HttpContext http, Db db, AuditLog audit, TimeProvider time, CancellationToken ct) =>
        SetAdminDrainAsync(agentId, true, AuditActions.AgentDrained, http, db, audit, time, ct);

    /// <summary>
    /// Lifts the admin's drain: the agent takes new sessions again, unless it says itself that it is draining
    /// (<see cref="AgentView.AgentDraining"/>, while it stops). Idempotent.
    /// </summary>
    public static Task<Results<Ok<AgentView>, JsonHttpResult<ApiError>>> UndrainAsync(
        string agentId, HttpContext http, Db db, AuditLog audit, TimeProvider time, CancellationToken ct) =>
        SetAdminDrainAsync(agentId, false, AuditActions.AgentUndrained, http, db, audit, time, ct);

    private static async Task<Results<Ok<AgentView>, JsonHttpResult<ApiError>>> SetAdminDrainAsync(
        string agentId, bool draining, string action, HttpContext http, Db db, AuditLog audit, TimeProvider time, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        var agent = await db.InTransactionAsync(async (conn, tx) =>
        {
            var changed = await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE agents SET draining = @draining, updated_at = @now WHERE agent_id = @agentId",
                new { agentId, draining, now = time.GetUtcNow() }, tx, cancellationToken: ct));
            if (changed == 0) return null;
            await audit.WriteAsync(conn, tx, caller.Username, action, agentId, null, http, ct);
            return await FindAsync(conn, tx, agentId, ct);
        }, ct);
        return agent is null ? NotFound(agentId) : TypedResults.Ok(agent.ToView());
    }

    /// <summary>
    /// Replaces the agent's token (the new one is shown once, here; only its hash is stored) and ends the old one at
    /// once: a connect with it is refused (401), the agent's live connection is disowned (its row names no connection and
    /// says offline) and closed — here at once, on another replica by its next heartbeat flush or disowned-connection
    /// sweep, as after a DELETE — and a socket that authenticated with the old token but has not said hello yet is
    /// refused at its hello. Sessions placed on the agent are left as they are: the agent, restarted with the new token,
    /// reports them in its hello as after any reconnect.
    /// </summary>
    public static async Task<Results<Ok<CreateAgentResponse>, JsonHttpResult<ApiError>>> RotateTokenAsync(
        string agentId, HttpContext http, Db db, AuditLog audit, AgentConnectionRegistry registry, TimeProvider time,
        ILoggerFactory loggers, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        var token = AgentTokens.Generate();
        var hash = AgentTokens.Hash(token);
        var rotated = await db.InTransactionAsync(async (conn, tx) =>
        {
            var changed = await conn.ExecuteAsync(new CommandDefinition(
                """
                UPDATE agents SET token_hash = @hash, status = @offline, connection_id = NULL, updated_at = @now
                WHERE agent_id = @agentId
                """,
                new { agentId, hash, offline = AgentStatus.Offline, now = time.GetUtcNow() }, tx, cancellationToken: ct));
            if (changed == 0) return false;
            await audit.WriteAsync(conn, tx, caller.Username, AuditActions.AgentTokenRotated, agentId, null, http, ct);
            return true;
        }, ct);
        if (!rotated) return NotFound(agentId);

        // A connection that came with the new token already (another admin's rotation racing this one) is not ours to close.
        if (registry.Find(agentId) is { } connection && connection.TokenHash != hash)
        {
            loggers.CreateLogger(typeof(AgentsApi)).LogInformation(HubEvents.AgentTokenRotated,
                "Agent {AgentId} token rotated by {Admin}; closing its connection {ConnectionId}", agentId, caller.Username, connection.ConnectionId);
            await connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, "agent token rotated");
        }
        return TypedResults.Ok(new CreateAgentResponse(agentId, token));
    }

    /// <summary>
    /// Refused while live sessions are placed on the agent: they would be orphaned with nobody to stop them. Refused too
    /// while the agent may still run sessions the control plane ended without its word (<see cref="CountUnconfirmedAsync"/>):
    /// once the row is gone the agent never connects again, so its next hello would never stop them, and while it still
    /// holds deleted users' homes (<see cref="CountPendingHomeDeletesAsync"/>). <c>?force=true</c> deletes in those cases
    /// anyway (audited as forced), and when every live session left is already being stopped (ending those here); never
    /// with other live sessions.
    /// </summary>
    public static async Task<Results<NoContent, JsonHttpResult<ApiError>>> DeleteAsync(
        string agentId, string? force, HttpContext http, Db db, AuditLog audit, TimeProvider time, CancellationToken ct)
    {
        if (ForceParameter.Parse(force) is not { } forced) return ForceParameter.Invalid();
        var caller = CurrentUser.From(http.User);
        var outcome = await db.InTransactionAsync(async (conn, tx) =>
        {
            // Locked first: placement locks candidate agent rows too, so no session lands here between count and delete.
            var exists = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                $"SELECT agent_id FROM agents WHERE agent_id = @agentId{db.ForUpdate}", new { agentId }, tx, cancellationToken: ct));
            if (exists is null) return new DeleteOutcome(false, 0, 0, 0, 0);
            var live = await CountLiveAsync(conn, tx, "agent_id", agentId, ct);
            // Live sessions all being stopped need only the agent's confirmation, which a host gone for good never gives (a
            // stop it answered failed waits for its next hello): ?force=true ends them here, as it leaves unconfirmed stops.
            if (live.Live > 0 && (live.Stopping < live.Live || !forced)) return new DeleteOutcome(true, live.Live, live.Stopping, 0, 0);
            var unconfirmed = await CountUnconfirmedAsync(conn, tx, "WHERE c.agent_id = @agentId", new { agentId }, ct);
            var homeDeletes = await CountPendingHomeDeletesAsync(conn, tx, agentId, ct);
            if ((unconfirmed > 0 || homeDeletes > 0) && !forced) return new DeleteOutcome(true, 0, 0, unconfirmed, homeDeletes);
            var ended = live.Stopping > 0 ? await EndStoppingSessionsAsync(conn, tx, db, agentId, time.GetUtcNow(), ct) : 0;
            await conn.ExecuteAsync(new CommandDefinition("DELETE FROM agents WHERE agent_id = @agentId", new { agentId }, tx, cancellationToken: ct));
            await audit.WriteAsync(conn, tx, caller.Username, AuditActions.AgentDeleted, agentId, ForcedDetail(unconfirmed + ended, homeDeletes), http, ct);
            return new DeleteOutcome(true, 0, 0, 0, 0);
        }, ct);
        if (!outcome.Found) return NotFound(agentId);
        if (outcome.Live > 0) return LiveSessionsConflict(agentId, outcome.Live, outcome.Stopping);
        if (outcome.Unconfirmed > 0 || outcome.HomeDeletes > 0) return UnconfirmedSessionsConflict(agentId, outcome.Unconfirmed, outcome.HomeDeletes);
        return TypedResults.NoContent();
    }

    /// <summary>
    /// A forced delete of an agent whose remaining sessions are all being stopped: they end <c>terminated</c> here, saying
    /// the agent never confirmed the stop, since nothing else would ever move them. Returns how many.
    /// </summary>
    private static async Task<int> EndStoppingSessionsAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, Db db, string agentId, DateTimeOffset now, CancellationToken ct)
    {
        var stopping = (await conn.QueryAsync<string>(new CommandDefinition(
            "SELECT id FROM sessions WHERE agent_id = @agentId AND state = @terminating",
            new { agentId, terminating = SessionState.Terminating }, tx, cancellationToken: ct))).ToList();
        var reason = Commands.CommandResults.Reason(
            $"agent {agentId} was deleted (forced) before it confirmed the stop; the session may still run on its host");
        var ended = await SessionStateMachine.TryTransitionManyAsync(conn, tx, db.IsPostgres,
            stopping.Select(id => (id, agentId, (string?)reason)).ToList(), [SessionState.Terminating], SessionState.Terminated, now, ct);
        return ended.Count;
    }

    /// <summary>The audit detail of a forced delete: what was left to the agent's host; null when nothing was.</summary>
    private static string? ForcedDetail(long unconfirmed, long homeDeletes)
    {
        if (unconfirmed == 0 && homeDeletes == 0) return null;
        var left = new List<string>(2);
        if (unconfirmed > 0) left.Add($"{unconfirmed} session(s) the agent had not confirmed stopping");
        if (homeDeletes > 0) left.Add($"{homeDeletes} deleted user(s)' persistent home(s) it had not deleted");
        return $"forced; {string.Join(" and ", left)} left to it";
    }

    /// <summary>
    /// The <c>home.delete</c> commands of this agent row's lifetime still waiting for it: each is a deleted user's persistent
    /// home, with their files, on the agent's host. Once the row is gone the agent never connects again to receive them, so
    /// the delete refuses over them as over unconfirmed stops. An expired one is not counted: it gave up already.
    /// </summary>
    internal static Task<long> CountPendingHomeDeletesAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string agentId, CancellationToken ct) =>
        conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"""
            SELECT COUNT(*) FROM agent_commands c JOIN agents a ON a.agent_id = c.agent_id
            WHERE c.agent_id = @agentId AND c.state IN ({CommandRow.OpenStatesSql}) AND c.type = @homeDelete AND c.created_at >= a.created_at
            """, new { agentId, homeDelete = CommandTypes.HomeDelete }, tx, cancellationToken: ct));

    /// <summary>
    /// An open or expired command <c>c</c> of agent <c>a</c> that leaves its session possibly running on the agent though
    /// the control plane ended it without the agent's word: a stop, or a start it may have received (sent at least once),
    /// that is still open, or that expired after the agent's last hello (that session ended terminated or failed, relying
    /// on the next hello's inventory to stop what is left). A hello after the expiry reconciled it: what the agent still
    /// had got a new stop, which is open until it answers. Parameters: <c>@start</c>, <c>@stop</c> and <c>@expired</c>, the
    /// names of <c>session.start</c>, <c>session.stop</c> and the expired state. The delete's 409 counts these rows, so
    /// <see cref="Commands.CommandPruner"/> keeps the expired ones past their retention. Only commands of this agent row's
    /// lifetime: an agent deleted and registered again under its id (another host, or a mistake undone) starts clean.
    /// </summary>
    internal const string UnconfirmedCommandSql = """
        c.type IN (@start, @stop) AND c.session_id IS NOT NULL AND (c.type = @stop OR c.attempts > 0)
          AND (c.state <> @expired OR a.connected_at IS NULL OR c.updated_at >= a.connected_at)
          AND c.created_at >= a.created_at
        """;

    /// <summary>
    /// The live sessions whose <paramref name="column"/> (<c>agent_id</c> or <c>user_id</c>) is <paramref name="value"/>,
    /// and how many of them are already being stopped (<c>terminating</c>): what the agent and user deletes refuse over.
    /// </summary>
    internal static Task<(long Live, long Stopping)> CountLiveAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string column, string value, CancellationToken ct) =>
        conn.QuerySingleAsync<(long Live, long Stopping)>(new CommandDefinition(
            $"""
            SELECT COUNT(*) AS Live, COALESCE(SUM(CASE WHEN state = @terminating THEN 1 ELSE 0 END), 0) AS Stopping
            FROM sessions WHERE {column} = @value AND state IN ({SessionState.LiveSqlList})
            """, new { value, terminating = SessionState.Terminating }, tx, cancellationToken: ct));

    /// <summary>
    /// Counts the sessions an agent may still run though the control plane ended them without its word
    /// (<see cref="UnconfirmedCommandSql"/>), among the commands <paramref name="scope"/> keeps: a join and a WHERE over
    /// <c>c</c> (the command) and <c>a</c> (its agent), with its parameters in <paramref name="scopeArgs"/>. The agent
    /// delete counts one agent's (read through <c>ix_agent_commands_agent_state</c>), the user delete one user's homes.
    /// </summary>
    internal static Task<long> CountUnconfirmedAsync(
        System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction tx, string scope, object scopeArgs, CancellationToken ct)
    {
        var args = new DynamicParameters(scopeArgs);
        args.Add("start", CommandTypes.SessionStart);
        args.Add("stop", CommandTypes.SessionStop);
        args.Add("expired", CommandState.Expired);
        return conn.ExecuteScalarAsync<long>(new CommandDefinition(
            $"""
            SELECT COUNT(DISTINCT c.session_id) FROM agent_commands c JOIN agents a ON a.agent_id = c.agent_id
            {scope} AND c.state IN ({CommandRow.OpenStatesSql}, @expired) AND {UnconfirmedCommandSql}
            """, args, tx, cancellationToken: ct));
    }

    private readonly record struct DeleteOutcome(bool Found, long Live, long Stopping, long Unconfirmed, long HomeDeletes);

    /// <summary>
    /// The delete's 409 while sessions are placed on the agent (<c>?force=true</c> does not override it). Those already being stopped (<c>terminating</c>, deleted
    /// by their users or an admin) need nothing but time or the agent's return, so the message says so instead of asking
    /// the admin to delete them again.
    /// </summary>
    public static JsonHttpResult<ApiError> LiveSessionsConflict(string agentId, long live, long stopping = 0)
    {
        var others = live - stopping;
        var text = $"Agent '{agentId}' still has {live} live session{(live == 1 ? "" : "s")}";
        if (stopping > 0 && others == 0)
            return TypedResults.Json(new ApiError("Conflict",
                text + $", {(live == 1 ? "which is" : "all")} being stopped: wait until the agent confirms the stop{(live == 1 ? "" : "s")} " +
                $"(it must be online to do so), then delete it; or delete with ?force=true (DELETE /api/v1/agents/{agentId}?force=true), which " +
                $"ends {(live == 1 ? "it" : "them")} here though {(live == 1 ? "it" : "they")} may keep running on its host.")
            { UnconfirmedSessions = stopping }, statusCode: StatusCodes.Status409Conflict);
        else if (stopping > 0)
            text += $" ({stopping} of them being stopped); drain it (POST /api/v1/agents/{agentId}/drain) and wait for them to end, " +
                    "or delete the others first.";
        else
            text += $"; drain it (POST /api/v1/agents/{agentId}/drain) and wait for them to end, or delete them first.";
        return ApiErrors.Conflict(text);
    }

    /// <summary>
    /// The delete's 409 while the agent may still run sessions that ended without its word, or still holds deleted users'
    /// homes it has not been able to delete. <c>unconfirmedSessions</c> and <c>pendingHomeDeletes</c> tell it apart from
    /// <see cref="LiveSessionsConflict"/> for clients (the admin agents page offers the force).
    /// </summary>
    public static JsonHttpResult<ApiError> UnconfirmedSessionsConflict(string agentId, long unconfirmed, long homeDeletes = 0)
    {
        var held = new List<string>(2);
        if (unconfirmed > 0)
            held.Add($"may still run {unconfirmed} session{(unconfirmed == 1 ? "" : "s")} that ended here without its confirmation " +
                     "(a stop or start that expired or is still open since it last connected)");
        if (homeDeletes > 0)
            held.Add($"still holds the persistent home{(homeDeletes == 1 ? "" : "s")} of {homeDeletes} deleted user{(homeDeletes == 1 ? "" : "s")} " +
                     "(their home.delete waits for it)");
        var (what, todo) = unconfirmed > 0
            ? (homeDeletes > 0 ? ("them and those files", "stops those sessions and deletes those homes") : ("them", "stops them"))
            : ("those files", "deletes them");
        return TypedResults.Json(
            new ApiError("Conflict",
                $"Agent '{agentId}' {string.Join(" and ", held)}: deleting it now would leave {what} on its host. " +
                $"Bring the agent online once so it {todo}, or delete with ?force=true (DELETE /api/v1/agents/{agentId}?force=true).")
            {
                UnconfirmedSessions = unconfirmed > 0 ? unconfirmed : null,
                PendingHomeDeletes = homeDeletes > 0 ? homeDeletes : null,
            }, statusCode: StatusCodes.Status409Conflict);
    }

    private static Task<AgentRecord?> FindAsync(System.Data.Common.DbConnection conn, System.Data.Common.DbTransaction? tx, string agentId, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<AgentRecord?>(new CommandDefinition(FindSql, new { agentId }, tx, cancellationToken: ct));

    /// <summary>Every agent, with its live-session count (<see cref="AgentRecord.Columns"/>).</summary>
    internal static readonly string ListSql = $"SELECT {AgentRecord.Columns} FROM {AgentRecord.From} ORDER BY a.agent_id";

    /// <summary>The agent <c>@agentId</c>, with its live-session count.</summary>
    internal static readonly string FindSql = $"SELECT {AgentRecord.Columns} FROM {AgentRecord.From} WHERE a.agent_id = @agentId";

    private static JsonHttpResult<ApiError> NotFound(string agentId) => ApiErrors.NotFound($"There is no agent '{agentId}'.");
}
