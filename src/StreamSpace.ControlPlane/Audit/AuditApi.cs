using System.Text;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Audit;

/// <summary>One audit entry as the API shows it.</summary>
public sealed record AuditEntry
{
    public long Id { get; init; }
    public DateTimeOffset At { get; init; }
    public string? Actor { get; init; }
    public required string Action { get; init; }
    public string? Target { get; init; }
    public string? Detail { get; init; }
    public string? ClientIp { get; init; }
}

/// <summary>
/// <c>GET /api/v1/audit?user=&amp;action=&amp;limit=&amp;before=</c> (admin): newest first, a page of <c>limit</c> entries; when
/// older ones follow, a <c>Link: &lt;...&gt;; rel="next"</c> header with the next page's URL (same filters, <c>before</c> = the
/// id of this page's last entry), as <c>GET /api/v1/sessions</c> pages. The body stays a bare array.
/// </summary>
public static class AuditApi
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder routes)
    {
        routes.MapGroup("/api/v1/audit").WithTags("Audit")
            .MapGet("", ListAsync).RequireAuthorization(Policies.Admin);
        return routes;
    }

    /// <param name="user">
    /// entries by this username, about it (<c>user.*</c> with it as target) or about its sessions (<c>subject_user</c>);
    /// not those of a template or agent that happens to share the name
    /// </param>
    /// <param name="limit">read as text so a non-number is our clear 400, not a binder error</param>
    /// <param name="before">only entries older than this id: the cursor of the Link header's next page</param>
    public static async Task<Results<Ok<List<AuditEntry>>, JsonHttpResult<ApiError>>> ListAsync(
        HttpContext http, string? user, string? action, string? limit, string? before, Db db, CancellationToken ct)
    {
        const System.Globalization.NumberStyles digits = System.Globalization.NumberStyles.None;
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        var take = DefaultLimit;
        if (limit is not null && (!int.TryParse(limit, digits, invariant, out take) || take is < 1 or > MaxLimit))
            return ApiErrors.BadRequest($"limit must be a whole number between 1 and {MaxLimit}.", new Dictionary<string, string> { ["limit"] = $"must be between 1 and {MaxLimit}" });
        long beforeId = 0;
        if (before is not null && (!long.TryParse(before, digits, invariant, out beforeId) || beforeId < 1))
            return ApiErrors.BadRequest("before must be an audit entry id (a whole number from 1), as the Link header gives it.",
                new Dictionary<string, string> { ["before"] = "must be an audit entry id" });
        var v = new Validation().RequireStorable("user", user).RequireStorable("action", action);
        if (!v.IsValid) return v.ToResult();

        await using var conn = await db.OpenAsync(ct);
        var rows = (await conn.QueryAsync<AuditEntry>(new CommandDefinition(ListSql(!string.IsNullOrEmpty(user), !string.IsNullOrEmpty(action), before is not null),
            new { user, action, beforeId, fetch = take + 1 }, cancellationToken: ct))).ToList();
        if (rows.Count > take)
        {
            rows.RemoveRange(take, rows.Count - take);
            var query = QueryString.Create(new Dictionary<string, string?>
            {
                ["user"] = user, ["action"] = action, ["limit"] = take.ToString(invariant),
                ["before"] = rows[^1].Id.ToString(invariant),
            }.Where(p => !string.IsNullOrEmpty(p.Value)));
            http.Response.Headers.Link = $"</api/v1/audit{query}>; rel=\"next\"";
        }
        return TypedResults.Ok(rows);
    }

    /// <summary>
    /// The page query; parameters <c>@user</c>, <c>@action</c>, <c>@beforeId</c> (each only when filtered by it) and
    /// <c>@fetch</c>. Every branch of the user filter has an index (actor; target since M0013; subject_user since M0014).
    /// </summary>
    internal static string ListSql(bool byUser, bool byAction, bool before)
    {
        var sql = new StringBuilder("SELECT id AS Id, at AS At, actor AS Actor, action AS Action, target AS Target, detail AS Detail, client_ip AS ClientIp FROM audit_log WHERE 1 = 1");
        if (byUser) sql.Append(" AND (actor = @user OR subject_user = @user OR (target = @user AND action LIKE 'user.%'))");
        if (byAction) sql.Append(" AND action = @action");
        if (before) sql.Append(" AND id < @beforeId");
        // id is the insertion order; `at` can tie within a clock tick. One row more than the page tells whether more follow.
        sql.Append(" ORDER BY id DESC LIMIT @fetch");
        return sql.ToString();
    }
}
