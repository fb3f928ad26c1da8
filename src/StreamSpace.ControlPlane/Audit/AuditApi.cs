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

/// <summary><c>GET /api/v1/audit?user=&amp;action=&amp;limit=</c> (admin): newest first.</summary>
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

    /// <param name="user">entries whose actor or target is this username</param>
    /// <param name="limit">read as text so a non-number is our clear 400, not a binder error</param>
    public static async Task<Results<Ok<List<AuditEntry>>, JsonHttpResult<ApiError>>> ListAsync(
        string? user, string? action, string? limit, Db db, CancellationToken ct)
    {
        var take = DefaultLimit;
        if (limit is not null && (!int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out take) || take is < 1 or > MaxLimit))
            return ApiErrors.BadRequest($"limit must be a whole number between 1 and {MaxLimit}.", new Dictionary<string, string> { ["limit"] = $"must be between 1 and {MaxLimit}" });
        var v = new Validation().RequireStorable("user", user).RequireStorable("action", action);
        if (!v.IsValid) return v.ToResult();

        var sql = new StringBuilder("SELECT id AS Id, at AS At, actor AS Actor, action AS Action, target AS Target, detail AS Detail, client_ip AS ClientIp FROM audit_log WHERE 1 = 1");
        if (!string.IsNullOrEmpty(user)) sql.Append(" AND (actor = @user OR target = @user)");
        if (!string.IsNullOrEmpty(action)) sql.Append(" AND action = @action");
        // id is the insertion order; `at` can tie within a clock tick.
        sql.Append(" ORDER BY id DESC LIMIT @take");

        await using var conn = await db.OpenAsync(ct);
        var rows = await conn.QueryAsync<AuditEntry>(new CommandDefinition(sql.ToString(), new { user, action, take }, cancellationToken: ct));
        return TypedResults.Ok(rows.ToList());
    }
}
