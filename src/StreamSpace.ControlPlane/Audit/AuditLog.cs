using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Audit;

/// <summary>Audit actions, as stored in <c>audit_log.action</c> and filtered on by <c>GET /api/v1/audit?action=</c>.</summary>
public static class AuditActions
{
    public const string LoginSucceeded = "login.succeeded";
    public const string LoginFailed = "login.failed";
    public const string SessionCreated = "session.created";
    public const string SessionDeleted = "session.deleted";
    /// <summary>A hibernate asked through the API (actor the caller, target the session, the owner in the detail).</summary>
    public const string SessionHibernated = "session.hibernated";
    /// <summary>A wake asked through the API (actor the caller, target the session, the owner in the detail).</summary>
    public const string SessionWoken = "session.woken";
    /// <summary>A session hibernated or terminated by idle handling (actor <c>system</c>).</summary>
    public const string SessionIdle = "session.idle";
    /// <summary>
    /// An admin connected a viewer to somebody else's session (actor the admin, target the session, the owner in the
    /// detail): they see that desktop and can type into it. An owner viewing their own session is not audited.
    /// </summary>
    public const string SessionViewed = "session.viewed";
    public const string UserCreated = "user.created";
    public const string UserUpdated = "user.updated";
    public const string UserRoleChanged = "user.role_changed";
    public const string UserDisabled = "user.disabled";
    public const string UserDeleted = "user.deleted";
    public const string AgentCreated = "agent.created";
    public const string AgentDeleted = "agent.deleted";
    public const string AgentDrained = "agent.drained";
    /// <summary>An admin lifted their drain (<c>POST /api/v1/agents/{id}/undrain</c>).</summary>
    public const string AgentUndrained = "agent.undrained";
    /// <summary>An admin replaced the agent's token (<c>POST /api/v1/agents/{id}/rotate-token</c>).</summary>
    public const string AgentTokenRotated = "agent.token_rotated";
    public const string TemplateChanged = "template.changed";
}

/// <summary>Appends to <c>audit_log</c>, inside the caller's transaction when there is one.</summary>
public sealed class AuditLog(Db db, TimeProvider time)
{
    public async Task WriteAsync(string? actor, string action, string? target, string? detail, HttpContext? http, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        await WriteAsync(conn, null, actor, action, target, detail, http, ct);
    }

    /// <summary>An entry about <paramref name="sessionId"/>, which <c>?user=</c> finds under its <paramref name="owner"/>.</summary>
    public async Task WriteSessionAsync(string? actor, string action, string sessionId, string owner, string? detail, HttpContext? http, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        await WriteSessionAsync(conn, null, actor, action, sessionId, owner, detail, http, ct);
    }

    /// <summary>Appends several entries in the caller's transaction: one set-based INSERT on PostgreSQL.</summary>
    public async Task WriteManyAsync(DbConnection conn, DbTransaction? tx, IReadOnlyList<NewAuditEntry> entries, CancellationToken ct)
    {
        if (entries.Count == 0) return;
        var at = time.GetUtcNow();
        if (db.IsPostgres)
        {
            var (sql, args) = PgInsertMany(entries);
            await conn.ExecuteAsync(new CommandDefinition(sql, args, tx, cancellationToken: ct));
            return;
        }
        foreach (var e in entries)
            await conn.ExecuteAsync(new CommandDefinition(
                "INSERT INTO audit_log (at, actor, action, target, detail, client_ip, subject_user) VALUES (@at, @Actor, @Action, @Target, @Detail, @ClientIp, @SubjectUser)",
                new { at, e.Actor, e.Action, e.Target, e.Detail, e.ClientIp, e.SubjectUser }, tx, cancellationToken: ct));
    }

    /// <summary>
    /// The PostgreSQL statement of <see cref="WriteManyAsync"/>, with parameter names (a_*) of its own so a caller can
    /// send it together with other statements in one round trip.
    /// </summary>
    internal (string Sql, object Args) PgInsertMany(IReadOnlyList<NewAuditEntry> entries) =>
        ("""
         INSERT INTO audit_log (at, actor, action, target, detail, client_ip, subject_user)
         SELECT @a_at, v.actor, v.action, v.target, v.detail, v.ip, v.subject
         FROM unnest(@a_actors, @a_actions, @a_targets, @a_details, @a_ips, @a_subjects) WITH ORDINALITY AS v(actor, action, target, detail, ip, subject, n)
         ORDER BY v.n
         """,
         new
         {
             a_at = time.GetUtcNow(), a_actors = entries.Select(e => e.Actor).ToArray(), a_actions = entries.Select(e => e.Action).ToArray(),
             a_targets = entries.Select(e => e.Target).ToArray(), a_details = entries.Select(e => e.Detail).ToArray(),
             a_ips = entries.Select(e => e.ClientIp).ToArray(), a_subjects = entries.Select(e => e.SubjectUser).ToArray(),
         });

    public Task WriteAsync(DbConnection conn, DbTransaction? tx, string? actor, string action, string? target, string? detail, HttpContext? http, CancellationToken ct) =>
        WriteManyAsync(conn, tx, [new NewAuditEntry(actor, action, target, detail, http?.Connection.RemoteIpAddress?.ToString())], ct);

    /// <inheritdoc cref="WriteSessionAsync(string?, string, string, string, string?, HttpContext?, CancellationToken)"/>
    public Task WriteSessionAsync(DbConnection conn, DbTransaction? tx, string? actor, string action, string sessionId, string owner, string? detail,
        HttpContext? http, CancellationToken ct) =>
        WriteManyAsync(conn, tx, [new NewAuditEntry(actor, action, sessionId, detail, http?.Connection.RemoteIpAddress?.ToString(), owner)], ct);
}

/// <summary>
/// One entry for <see cref="AuditLog.WriteManyAsync"/>. <paramref name="SubjectUser"/>: the user the entry is about when the
/// target is not that user (a session's owner), so <c>GET /api/v1/audit?user=</c> finds it.
/// </summary>
public sealed record NewAuditEntry(string? Actor, string Action, string? Target, string? Detail, string? ClientIp, string? SubjectUser = null);
