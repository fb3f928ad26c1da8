using System.Data.Common;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Sessions;

public sealed record CreateSessionRequest(string? Template, string? User, SessionResourcesRequest? Resources, bool? PersistentHome);
public sealed record SessionResourcesRequest(string? Cpu, string? Memory);

/// <summary>
/// Sessions (design §4, §5). This side records intent only: it creates sessions and asks agents, through the
/// command outbox, to start, stop, hibernate and wake them. The agent hub moves sessions on the agents' results.
/// </summary>
public static class SessionsApi
{
    public static IServiceCollection AddStreamSpaceSessions(this IServiceCollection services) =>
        services.AddSingleton<SessionQuota>()
            .AddSingleton<SessionCreator>()
            .AddSingleton<IdleSessionSweeper>()
            .AddHostedService(sp => sp.GetRequiredService<IdleSessionSweeper>())
            .AddSingleton<EndedSessionPruner>()
            .AddHostedService(sp => sp.GetRequiredService<EndedSessionPruner>());

    public static IEndpointRouteBuilder MapSessionsApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/sessions").WithTags("Sessions").RequireAuthorization(Policies.User);
        group.MapPost("/", CreateAsync).RequireAuthorization(Policies.User)
            .ProducesApiError(StatusCodes.Status403Forbidden, "The owner's quota is used up; a user asked for another user's session; or resources above the template's (admins only).")
            .ProducesApiError(StatusCodes.Status503ServiceUnavailable, "No agent can take the session ('reasons' says why for each agent), or the database is unavailable ('Retry-After').");
        group.MapGet("/", ListAsync).RequireAuthorization(Policies.User);
        group.MapGet("/{id}", GetAsync).RequireAuthorization(Policies.User);
        group.MapDelete("/{id}", DeleteAsync).RequireAuthorization(Policies.User);
        group.MapPost("/{id}/hibernate", HibernateAsync).RequireAuthorization(Policies.User)
            .ProducesApiError(StatusCodes.Status409Conflict, "The session is not running, or its agent is offline.");
        group.MapPost("/{id}/wake", WakeAsync).RequireAuthorization(Policies.User)
            .ProducesApiError(StatusCodes.Status409Conflict, "The session is not hibernated, or its agent is offline.");
        return routes;
    }

    public static async Task<Results<Created<SessionView>, JsonHttpResult<ApiError>>> CreateAsync(
        CreateSessionRequest? body, HttpContext http, SessionCreator creator, CancellationToken ct)
    {
        var v = new Validation();
        if (body is null) return v.Add("body", "a JSON object {template, user?, resources?, persistentHome?} is required").ToResult();
        if (string.IsNullOrWhiteSpace(body.Template)) v.Add("template", "is required");
        if (body.User is not null && string.IsNullOrWhiteSpace(body.User)) v.Add("user", "must be a username when given");
        v.RequireStorable("template", body.Template).RequireStorable("user", body.User);
        if (body.Resources?.Cpu is not null && !ResourceQuantity.TryParseCpu(body.Resources.Cpu, out _, out var cpuError)) v.Add("resources.cpu", cpuError);
        if (body.Resources?.Memory is not null && !ResourceQuantity.TryParseMemory(body.Resources.Memory, out _, out var memoryError)) v.Add("resources.memory", memoryError);
        if (!v.IsValid) return v.ToResult();

        var caller = CurrentUser.From(http.User);
        var targetUsername = body.User?.Trim() ?? caller.Username;
        if (targetUsername != caller.Username && !caller.IsAdmin)
            return ApiErrors.Forbidden("Only an admin can create a session for another user.");

        var outcome = await creator.CreateAsync(new SessionCreateRequest(
            caller, targetUsername, body.Template!.Trim(), body.Resources?.Cpu, body.Resources?.Memory, body.PersistentHome ?? false,
            http.Connection.RemoteIpAddress?.ToString()), ct);
        if (outcome.Error is not null) return outcome.Error;
        return TypedResults.Created($"/api/v1/sessions/{outcome.Session!.Id}", outcome.Session);
    }

    /// <summary>
    /// Newest first, one page at a time (<see cref="SessionListPage"/>): <c>limit</c> sessions (default 100, at most
    /// 500), and when more follow, a <c>Link: &lt;...&gt;; rel="next"</c> header with the next page's URL (same filters,
    /// <c>after</c> = the cursor of this page's last session). The body stays a bare array (design §4).
    /// <c>live=true</c> keeps the sessions that still hold quota (pending … terminating), <c>live=false</c> the ended ones.
    /// </summary>
    public static async Task<Results<Ok<IReadOnlyList<SessionView>>, JsonHttpResult<ApiError>>> ListAsync(
        HttpContext http, Db db, string? user, string? agent, string? state, string? live, string? limit, string? after, CancellationToken ct)
    {
        // An empty filter is no filter (a form with the field left blank sends it so), as on GET /api/v1/audit: `?user=`
        // used to filter by the empty username and list nothing.
        (user, agent, state, live) = (NullIfEmpty(user), NullIfEmpty(agent), NullIfEmpty(state), NullIfEmpty(live));
        var v = new Validation().RequireStorable("user", user).RequireStorable("agent", agent);
        if (state is not null && !SessionState.All.Contains(state))
            v.Add("state", $"is not a session state; one of: {string.Join(", ", SessionState.All)}");
        bool? liveOnly = live switch { null => null, "true" => true, "false" => false, _ => null };
        if (live is not null && liveOnly is null) v.Add("live", "must be true or false");
        if (!SessionListPage.TryParseLimit(limit, out var pageSize))
            v.Add("limit", $"must be a whole number from 1 to {SessionListPage.MaxLimit}");
        DateTimeOffset afterAt = default;
        var afterId = "";
        if (after is not null && !SessionListPage.TryParseCursor(after, out afterAt, out afterId))
            v.Add("after", "is not a cursor from this API's Link header");
        if (!v.IsValid) return v.ToResult();

        var caller = CurrentUser.From(http.User);
        var where = new List<string>();
        // Users only ever see their own sessions; the filters narrow further, never widen.
        if (!caller.IsAdmin) where.Add("user_id = @callerId");
        // By the owner's id, whose index is in list order (user_id, created_at, id); sessions.username has no index, and an
        // admin's filtered list (the "My sessions" page, every 2 s) walked the whole created_at index for it.
        if (user is not null) where.Add("user_id = (SELECT u.id FROM users u WHERE u.username = @user)");
        if (agent is not null) where.Add("agent_id = @agent");
        if (state is not null) where.Add("state = @state");
        if (liveOnly is { } l) where.Add($"state {(l ? "" : "NOT ")}IN ({SessionState.LiveSqlList})");
        // After the cursor: older, or as old with a smaller id. Written so that "created_at <= @afterAt" alone is the
        // index range (the plain OR form made PostgreSQL walk the index from the newest row: 156 ms vs 0.7 ms for a
        // page 400 000 sessions deep); the OR only sorts out rows of the cursor's own instant.
        if (after is not null) where.Add("created_at <= @afterAt AND (created_at < @afterAt OR id < @afterId)");
        // One row more than the page tells whether a next page exists.
        var sql = $"SELECT {SessionRecord.Columns} FROM sessions"
                  + (where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "")
                  + " ORDER BY created_at DESC, id DESC LIMIT @take";
        await using var conn = await db.OpenAsync(ct);
        var rows = (await conn.QueryAsync<SessionRecord>(new CommandDefinition(sql,
            new { callerId = caller.Id, user, agent, state, afterAt, afterId, take = pageSize + 1 }, cancellationToken: ct))).AsList();
        if (rows.Count > pageSize)
        {
            rows.RemoveRange(pageSize, rows.Count - pageSize);
            var last = rows[^1];
            var query = QueryString.Create(new Dictionary<string, string?>
            {
                ["user"] = user, ["agent"] = agent, ["state"] = state, ["live"] = live,
                ["limit"] = pageSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["after"] = SessionListPage.Cursor(last.CreatedAt, last.Id),
            }.Where(p => p.Value is not null));
            http.Response.Headers.Link = $"</api/v1/sessions{query}>; rel=\"next\"";
        }
        return TypedResults.Ok<IReadOnlyList<SessionView>>(rows.Select(r => r.ToView()).ToList());
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    public static async Task<Results<Ok<SessionView>, JsonHttpResult<ApiError>>> GetAsync(string id, HttpContext http, Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var session = await FindVisibleAsync(conn, null, db, id, CurrentUser.From(http.User), forUpdate: false, ct);
        return session is null ? NotFound(id) : TypedResults.Ok(session.ToView());
    }

    /// <summary>Idempotent: a session already on its way out (or gone) answers 202 with its current state.</summary>
    public static async Task<Results<Accepted<SessionView>, JsonHttpResult<ApiError>>> DeleteAsync(
        string id, HttpContext http, Db db, CommandOutbox outbox, AuditLog audit, TimeProvider time, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        string? notify = null;
        var result = await db.InTransactionAsync(async (conn, tx) =>
        {
            var session = await FindVisibleAsync(conn, tx, db, id, caller, forUpdate: true, ct);
            if (session is null) return null;
            if (session.State is SessionState.Terminating || SessionState.IsFinal(session.State)) return session;
            var now = time.GetUtcNow();
            await SessionStateMachine.TryTransitionAsync(conn, tx, id, SessionState.Terminating, $"deleted by {caller.Username}", now, session.State, ct: ct);
            if (session.AgentId is not null)
            {
                await outbox.EnqueueAsync(conn, tx, session.AgentId, id, CommandTypes.SessionStop, new SessionCommandArgs(id), ct);
                notify = session.AgentId;
            }
            else
            {
                // Never placed: there is nothing to stop anywhere.
                await SessionStateMachine.TryTransitionAsync(conn, tx, id, SessionState.Terminated, $"deleted by {caller.Username}", now, SessionState.Terminating, ct: ct);
            }
            await audit.WriteSessionAsync(conn, tx, caller.Username, AuditActions.SessionDeleted, id, session.Username, $"was {session.State}", http, ct);
            return await FindVisibleAsync(conn, tx, db, id, caller, forUpdate: false, ct);
        }, ct);
        if (result is null) return NotFound(id);
        if (notify is not null) outbox.NotifyQueued(notify);
        return TypedResults.Accepted($"/api/v1/sessions/{id}", result.ToView());
    }

    public static Task<Results<Accepted<SessionView>, JsonHttpResult<ApiError>>> HibernateAsync(
        string id, HttpContext http, Db db, CommandOutbox outbox, AuditLog audit, TimeProvider time, CancellationToken ct) =>
        RequestAsync(id, SessionState.Running, SessionState.Hibernating, CommandTypes.SessionHibernate, "hibernated", AuditActions.SessionHibernated,
            http, db, outbox, audit, time, ct);

    public static Task<Results<Accepted<SessionView>, JsonHttpResult<ApiError>>> WakeAsync(
        string id, HttpContext http, Db db, CommandOutbox outbox, AuditLog audit, TimeProvider time, CancellationToken ct) =>
        RequestAsync(id, SessionState.Hibernated, SessionState.Waking, CommandTypes.SessionWake, "woken", AuditActions.SessionWoken,
            http, db, outbox, audit, time, ct);

    /// <summary>
    /// Moves a session from <paramref name="from"/> to <paramref name="to"/>, asks its agent to do the work and audits it
    /// (an admin can freeze somebody else's desktop), all in one transaction.
    /// </summary>
    private static async Task<Results<Accepted<SessionView>, JsonHttpResult<ApiError>>> RequestAsync(
        string id, string from, string to, string commandType, string verb, string auditAction,
        HttpContext http, Db db, CommandOutbox outbox, AuditLog audit, TimeProvider time, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        var (session, error) = await db.InTransactionAsync<(SessionRecord?, JsonHttpResult<ApiError>?)>(async (conn, tx) =>
        {
            var current = await FindVisibleAsync(conn, tx, db, id, caller, forUpdate: true, ct);
            if (current is null) return (null, NotFound(id));
            if (current.State != from || current.AgentId is null)
                return (null, ApiErrors.Conflict($"Session '{id}' is {current.State}; only a {from} session can be {verb}."));
            // An offline agent cannot do it: the command would wait, expire and leave the session hibernating or waking
            // (design-deviations 3) until the agent is back, neither viewable nor retryable. Read under the session's lock,
            // so the answer and the state change agree; the agent row is the hub's to lock.
            var agentStatus = await conn.QuerySingleOrDefaultAsync<string?>(new CommandDefinition(
                "SELECT status FROM agents WHERE agent_id = @agentId", new { agentId = current.AgentId }, tx, cancellationToken: ct));
            if (agentStatus != AgentStatus.Online)
                return (null, ApiErrors.Of(StatusCodes.Status409Conflict, "Agent offline",
                    $"Session '{id}' runs on agent '{current.AgentId}', which is {agentStatus ?? "no longer registered"}; it can be {verb} when the agent is back online."));
            await SessionStateMachine.TryTransitionAsync(conn, tx, id, to, $"{verb} by {caller.Username}", time.GetUtcNow(), from, ct: ct);
            await outbox.EnqueueAsync(conn, tx, current.AgentId, id, commandType, new SessionCommandArgs(id), ct);
            await audit.WriteSessionAsync(conn, tx, caller.Username, auditAction, id, current.Username, $"owner={current.Username}", http, ct);
            return (await FindVisibleAsync(conn, tx, db, id, caller, forUpdate: false, ct), null);
        }, ct);
        if (error is not null) return error;
        outbox.NotifyQueued(session!.AgentId!);
        return TypedResults.Accepted($"/api/v1/sessions/{id}", session.ToView());
    }

    /// <summary>The session if the caller may see it (owner or admin); another user's session is "not found".</summary>
    private static async Task<SessionRecord?> FindVisibleAsync(
        DbConnection conn, DbTransaction? tx, Db db, string id, CurrentUser caller, bool forUpdate, CancellationToken ct)
    {
        var session = await conn.QuerySingleOrDefaultAsync<SessionRecord>(new CommandDefinition(
            $"SELECT {SessionRecord.Columns} FROM sessions WHERE id = @id{(forUpdate ? db.ForUpdate : "")}", new { id }, tx, cancellationToken: ct));
        return session is not null && (caller.IsAdmin || session.UserId == caller.Id) ? session : null;
    }

    private static JsonHttpResult<ApiError> NotFound(string id) => ApiErrors.NotFound($"There is no session '{id}'.");
}

/// <summary>Arguments of <c>session.stop</c>, <c>session.hibernate</c> and <c>session.wake</c>: just the session.</summary>
public sealed record SessionCommandArgs(string SessionId);
