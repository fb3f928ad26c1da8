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
    public const string UserCreated = "user.created";
    public const string UserUpdated = "user.updated";
    public const string UserRoleChanged = "user.role_changed";
    public const string UserDisabled = "user.disabled";
    public const string UserDeleted = "user.deleted";
    public const string AgentCreated = "agent.created";
    public const string AgentDeleted = "agent.deleted";
    public const string AgentDrained = "agent.drained";
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

    public Task WriteAsync(DbConnection conn, DbTransaction? tx, string? actor, string action, string? target, string? detail, HttpContext? http, CancellationToken ct) =>
        conn.ExecuteAsync(new CommandDefinition(
            "INSERT INTO audit_log (at, actor, action, target, detail, client_ip) VALUES (@at, @actor, @action, @target, @detail, @ip)",
            new { at = time.GetUtcNow(), actor, action, target, detail, ip = http?.Connection.RemoteIpAddress?.ToString() },
            tx, cancellationToken: ct));
}
