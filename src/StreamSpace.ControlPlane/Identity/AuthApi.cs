using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

public sealed record LoginRequest(string? Username, string? Password);
public sealed record LoginResponse(string Token, DateTimeOffset ExpiresAt, LoginUser User);
public sealed record LoginUser(string Id, string Username, string Role);

/// <summary><c>POST /api/v1/auth/login</c>.</summary>
public static class AuthApi
{
    private const int MaxUsernameLength = 64;

    public static IEndpointRouteBuilder MapAuthApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/auth").WithTags("Auth");
        group.MapPost("/login", LoginAsync).AllowAnonymous()
            .ProducesApiError(StatusCodes.Status401Unauthorized, "Wrong username or password, or the user is disabled.")
            .ProducesApiError(StatusCodes.Status429TooManyRequests, "Too many attempts for this username or from this client; 'Retry-After' says when to try again.");
        return routes;
    }

    public static async Task<Results<Ok<LoginResponse>, JsonHttpResult<ApiError>>> LoginAsync(
        LoginRequest? body, Db db, TokenIssuer tokens, AuditLog audit, LoginRateLimiter limiter, HttpContext http, CancellationToken ct)
    {
        var v = new Validation();
        v.Require(body is not null, "body", "a JSON object {username, password} is required");
        v.Require(!string.IsNullOrWhiteSpace(body?.Username), "username", "is required");
        v.Require(!string.IsNullOrEmpty(body?.Password), "password", "is required");
        // No real username is longer; the cap keeps junk out of the rate limiter's keys and the audit log.
        v.Require(body?.Username is not { Length: > MaxUsernameLength }, "username", $"must be at most {MaxUsernameLength} characters");
        v.RequireStorable("username", body?.Username);
        if (!v.IsValid) return v.ToResult();

        // Every username is lowercase (UsersApi), so "Admin" typed on a phone keyboard is admin.
        var username = body!.Username!.Trim().ToLowerInvariant();
        var throttle = limiter.TryAttempt(username, http.Connection.RemoteIpAddress, out var retryAfter);
        // Checked before the database and the (deliberately slow) hash; throttled attempts are not audited,
        // so a flood of them costs neither CPU nor database writes.
        if (throttle != LoginThrottle.None)
        {
            http.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return ApiErrors.Of(StatusCodes.Status429TooManyRequests, "Too many requests", throttle == LoginThrottle.Username
                ? $"Too many login attempts for this username; try again in {Math.Ceiling(retryAfter.TotalSeconds)} seconds."
                : $"Too many login attempts from this address; try again in {Math.Ceiling(retryAfter.TotalSeconds)} seconds.");
        }
        await using var conn = await db.OpenAsync(ct);
        var user = await conn.QuerySingleOrDefaultAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users WHERE username = @username", new { username }, cancellationToken: ct));
        // Verify against a dummy hash when the user is unknown so timing does not reveal which usernames exist.
        var ok = PasswordHasher.Verify(body.Password!, user?.PasswordHash ?? PasswordHasher.Dummy) && user is { Disabled: false };
        if (!ok)
        {
            await audit.WriteAsync(conn, null, username, AuditActions.LoginFailed, username, user is { Disabled: true } ? "user disabled" : "bad credentials", http, ct);
            return ApiErrors.Of(StatusCodes.Status401Unauthorized, "Invalid credentials", "The username or password is wrong, or the account is disabled.");
        }
        // Issued first: the audit log records a login only once the caller really holds a token.
        var (token, expiresAt) = tokens.Issue(user!);
        await audit.WriteAsync(conn, null, user!.Username, AuditActions.LoginSucceeded, user.Username, null, http, ct);
        return TypedResults.Ok(new LoginResponse(token, expiresAt, new LoginUser(user.Id, user.Username, user.Role)));
    }
}
