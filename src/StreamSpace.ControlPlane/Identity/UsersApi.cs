using System.Data.Common;
using System.Text.RegularExpressions;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Identity;

public sealed record CreateUserRequest(string? Username, string? Password, string? Role, int? MaxSessions);
public sealed record UpdateUserRequest(string? Role, int? MaxSessions, bool? Disabled, string? Password);

/// <summary>
/// Users: <c>GET /api/v1/users/me</c> for everyone signed in; listing, creating, changing and deleting
/// users for admins. Nobody changes their own role, disables or deletes themselves.
/// </summary>
public static partial class UsersApi
{
    public const int MinPasswordLength = 8;
    public const int MaxPasswordLength = 256;
    public const int MaxSessionsLimit = 1000;

    /// <summary>Usernames become part of session ids (<c>{user}-{template}-{suffix}</c>), hence the narrow alphabet.</summary>
    [GeneratedRegex(@"^[a-z0-9][a-z0-9_-]{1,31}\z", RegexOptions.CultureInvariant)]
    private static partial Regex UsernamePattern();

    public static bool IsValidUsername(string? username) => username is not null && UsernamePattern().IsMatch(username);

    public static IEndpointRouteBuilder MapUsersApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/users").WithTags("Users");
        group.MapGet("/me", GetMeAsync).RequireAuthorization(Policies.User);
        group.MapGet("", ListAsync).RequireAuthorization(Policies.Admin);
        group.MapPost("", CreateAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status409Conflict, "A user with that name exists.");
        group.MapGet("/{id}", GetAsync).RequireAuthorization(Policies.Admin);
        group.MapPatch("/{id}", UpdateAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status403Forbidden, "The caller is not an admin, or would disable themselves or change their own role.")
            .ProducesApiError(StatusCodes.Status409Conflict, "The change would leave no enabled admin.");
        group.MapDelete("/{id}", DeleteAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status403Forbidden, "The caller is not an admin, or is deleting themselves.")
            .ProducesApiError(StatusCodes.Status409Conflict, "The last enabled admin, or live sessions (terminate them first).");
        return routes;
    }

    public static async Task<Results<Ok<UserDto>, JsonHttpResult<ApiError>>> GetMeAsync(HttpContext http, Db db, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        await using var conn = await db.OpenAsync(ct);
        var user = await FindAsync(conn, null, caller.Id, forUpdate: "", ct);
        // Token validation just read this row; it can only be gone if it was deleted in between.
        return user is null ? ApiErrors.NotFound("Your user no longer exists.") : TypedResults.Ok(user.ToDto());
    }

    public static async Task<Ok<List<UserDto>>> ListAsync(Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var users = await conn.QueryAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users ORDER BY username", cancellationToken: ct));
        return TypedResults.Ok(users.Select(u => u.ToDto()).ToList());
    }

    /// <summary>One user, as the list shows it; where <see cref="CreateAsync"/>'s Location points.</summary>
    public static async Task<Results<Ok<UserDto>, JsonHttpResult<ApiError>>> GetAsync(string id, Db db, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var user = await FindAsync(conn, null, id, forUpdate: "", ct);
        return user is null ? ApiErrors.NotFound($"No user with id '{id}'.") : TypedResults.Ok(user.ToDto());
    }

    public static async Task<Results<Created<UserDto>, JsonHttpResult<ApiError>>> CreateAsync(
        CreateUserRequest? body, HttpContext http, Db db, AuditLog audit, IOptions<StreamSpaceOptions> options, TimeProvider time, CancellationToken ct)
    {
        var v = new Validation();
        v.Require(body is not null, "body", "a JSON object {username, password, role?, maxSessions?} is required");
        v.Require(body?.Username is not null, "username", "is required");
        if (body?.Username is not null)
        {
            v.Require(IsValidUsername(body.Username), "username", "must match ^[a-z0-9][a-z0-9_-]{1,31}$ (2-32 lowercase letters, digits, '-' or '_')");
            // The audit log names the control plane's own actions (idle handling, the first admin) with this actor.
            v.Require(body.Username != AdminBootstrap.SystemActor, "username", $"'{AdminBootstrap.SystemActor}' is reserved for the control plane's own entries in the audit log");
        }
        ValidatePassword(v, body?.Password, required: true);
        if (body?.Role is not null) v.Require(Roles.IsValid(body.Role), "role", "must be 'admin' or 'user'");
        if (body?.MaxSessions is { } max) v.Require(max is >= 0 and <= MaxSessionsLimit, "maxSessions", $"must be between 0 and {MaxSessionsLimit}");
        if (!v.IsValid) return v.ToResult();

        var caller = CurrentUser.From(http.User);
        var now = time.GetUtcNow();
        var user = new UserRecord
        {
            Id = Guid.NewGuid().ToString("N"),
            Username = body!.Username!,
            PasswordHash = PasswordHasher.Hash(body.Password!),
            Role = body.Role ?? Roles.User,
            Disabled = false,
            MaxSessions = body.MaxSessions ?? options.Value.DefaultMaxSessions,
            TokenVersion = 1,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var inserted = await db.InTransactionAsync(async (conn, tx) =>
        {
            // ON CONFLICT keeps the duplicate check race-free across requests and replicas.
            var rows = await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES (@Id, @Username, @PasswordHash, @Role, @Disabled, @MaxSessions, @TokenVersion, @CreatedAt, @UpdatedAt)
                ON CONFLICT (username) DO NOTHING
                """, user, tx, cancellationToken: ct));
            if (rows == 1)
                await audit.WriteAsync(conn, tx, caller.Username, AuditActions.UserCreated, user.Username,
                    $"role={user.Role} maxSessions={user.MaxSessions}", http, ct);
            return rows == 1;
        }, ct);
        if (!inserted) return ApiErrors.Conflict($"A user named '{user.Username}' already exists.");
        return TypedResults.Created($"/api/v1/users/{user.Id}", user.ToDto());
    }

    public static async Task<Results<Ok<UserDto>, JsonHttpResult<ApiError>>> UpdateAsync(
        string id, UpdateUserRequest? body, HttpContext http, Db db, AuditLog audit, TokenUserLookup tokenUsers, TimeProvider time, CancellationToken ct)
    {
        var v = new Validation();
        v.Require(body is not null, "body", "a JSON object {role?, maxSessions?, disabled?, password?} is required");
        v.Require(body is null || body.Role is not null || body.MaxSessions is not null || body.Disabled is not null || body.Password is not null,
            "body", "name at least one of role, maxSessions, disabled, password");
        if (body?.Role is not null) v.Require(Roles.IsValid(body.Role), "role", "must be 'admin' or 'user'");
        if (body?.MaxSessions is { } max) v.Require(max is >= 0 and <= MaxSessionsLimit, "maxSessions", $"must be between 0 and {MaxSessionsLimit}");
        ValidatePassword(v, body?.Password, required: false);
        if (!v.IsValid) return v.ToResult();

        var caller = CurrentUser.From(http.User);
        var self = caller.Id == id;
        if (self && body!.Disabled == true)
            return ApiErrors.Forbidden("You cannot disable yourself; ask another admin.");
        // Hashing is slow on purpose; do it before the row lock is taken.
        var newHash = body!.Password is { } password ? PasswordHasher.Hash(password) : null;

        var result = await db.InTransactionAsync<Results<Ok<UserDto>, JsonHttpResult<ApiError>>>(async (conn, tx) =>
        {
            var (callerRow, user) = await LockCallerAndTargetAsync(conn, tx, db, caller.Id, id, ct);
            if (CallerStillAdmin(callerRow, http) is { } refused) return refused;
            if (user is null) return ApiErrors.NotFound($"No user with id '{id}'.");
            var roleChanged = body.Role is not null && body.Role != user.Role;
            if (self && roleChanged)
                return ApiErrors.Forbidden("Nobody changes their own role; ask another admin.");
            var disabling = body.Disabled == true && !user.Disabled;
            var enabling = body.Disabled == false && user.Disabled;
            // A backstop: the caller, re-checked above as an enabled admin and never the target here (nobody disables or
            // demotes themselves), is already another enabled admin. It keeps the rule if either check is ever relaxed.
            if (user is { Role: Roles.Admin, Disabled: false } && (disabling || roleChanged)
                && await OtherEnabledAdminsAsync(conn, tx, user.Id, ct) == 0)
                return ApiErrors.Conflict($"'{user.Username}' is the last enabled admin; make another admin first.");
            // Any of these must end the tokens already handed out, at once (token validation compares the version).
            var endTokens = roleChanged || disabling || newHash is not null;
            var updated = user with
            {
                Role = body.Role ?? user.Role,
                MaxSessions = body.MaxSessions ?? user.MaxSessions,
                Disabled = body.Disabled ?? user.Disabled,
                PasswordHash = newHash ?? user.PasswordHash,
                TokenVersion = endTokens ? user.TokenVersion + 1 : user.TokenVersion,
                UpdatedAt = time.GetUtcNow(),
            };
            await conn.ExecuteAsync(new CommandDefinition(
                """
                UPDATE users SET role = @Role, max_sessions = @MaxSessions, disabled = @Disabled, password_hash = @PasswordHash,
                                 token_version = @TokenVersion, updated_at = @UpdatedAt
                WHERE id = @Id
                """, updated, tx, cancellationToken: ct));

            if (roleChanged)
                await audit.WriteAsync(conn, tx, caller.Username, AuditActions.UserRoleChanged, user.Username, $"{user.Role} -> {updated.Role}", http, ct);
            if (disabling)
                await audit.WriteAsync(conn, tx, caller.Username, AuditActions.UserDisabled, user.Username, null, http, ct);
            var other = new List<string>();
            if (enabling) other.Add("enabled");
            if (updated.MaxSessions != user.MaxSessions) other.Add($"maxSessions {user.MaxSessions} -> {updated.MaxSessions}");
            if (newHash is not null) other.Add("password changed"); // never the password itself
            if (other.Count > 0)
                await audit.WriteAsync(conn, tx, caller.Username, AuditActions.UserUpdated, user.Username, string.Join("; ", other), http, ct);
            return TypedResults.Ok(updated.ToDto());
        }, ct);
        // Committed: this replica's next request with the user's token reads the new row (others hear of it, M0008).
        tokenUsers.Invalidate(id);
        return result;
    }

    /// <summary>
    /// Deletes a user without live sessions, with their finished sessions. Every agent where one of their sessions had a
    /// persistent home gets a <c>home.delete</c> in the same transaction: the home is theirs alone (kept by user id, which
    /// nobody else is ever given) and would otherwise stay on that agent, with their data, for ever. A session of theirs
    /// whose stop expired while its agent was away may still run there; that agent stops it by reconciliation when it
    /// returns, and deletes the home once it has (an agent defers a <c>home.delete</c> while a session uses the home).
    /// </summary>
    public static async Task<Results<NoContent, JsonHttpResult<ApiError>>> DeleteAsync(
        string id, HttpContext http, Db db, AuditLog audit, TokenUserLookup tokenUsers, CommandOutbox outbox,
        IOptions<StreamSpaceOptions> options, CancellationToken ct)
    {
        var caller = CurrentUser.From(http.User);
        if (caller.Id == id) return ApiErrors.Forbidden("You cannot delete yourself; ask another admin.");

        WrittenCommands? homeDeletes = null;
        var result = await db.InTransactionAsync<Results<NoContent, JsonHttpResult<ApiError>>>(async (conn, tx) =>
        {
            var (callerRow, user) = await LockCallerAndTargetAsync(conn, tx, db, caller.Id, id, ct);
            if (CallerStillAdmin(callerRow, http) is { } refused) return refused;
            if (user is null) return ApiErrors.NotFound($"No user with id '{id}'.");
            if (user is { Role: Roles.Admin, Disabled: false } && await OtherEnabledAdminsAsync(conn, tx, user.Id, ct) == 0)
                return ApiErrors.Conflict($"'{user.Username}' is the last enabled admin; make another admin first.");
            var live = await Agents.AgentsApi.CountLiveAsync(conn, tx, "user_id", id, ct);
            if (live.Live > 0)
                return ApiErrors.Conflict(live.Stopping == live.Live
                    ? $"User '{user.Username}' still has {live.Live} live session(s), all being stopped: wait until their agents confirm the stops (they must be online to do so), then delete the user."
                    : live.Stopping > 0
                        ? $"User '{user.Username}' still has {live.Live} live session(s), {live.Stopping} of them being stopped; terminate the others first."
                        : $"User '{user.Username}' still has {live.Live} live session(s); terminate them first.");
            // A persistent-home session whose stop (or start) the control plane gave up on while its agent was away may still
            // run there: said in the audit entry, since its home goes only once that agent is back and has stopped it.
            var unconfirmed = await Agents.AgentsApi.CountUnconfirmedAsync(conn, tx,
                "JOIN sessions s ON s.id = c.session_id WHERE s.user_id = @id AND s.persistent_home = @yes", new { id, yes = true }, ct);
            // Read before the sessions go: they are the only record of where this user's homes are. Agents deleted since
            // took their state folder with them.
            var homeAgents = (await conn.QueryAsync<string>(new CommandDefinition(
                """
                SELECT DISTINCT agent_id FROM sessions
                WHERE user_id = @id AND persistent_home = @yes AND agent_id IN (SELECT agent_id FROM agents)
                ORDER BY agent_id
                """, new { id, yes = true }, tx, cancellationToken: ct))).ToList();
            homeDeletes = await outbox.WriteManyAsync(conn, tx,
                homeAgents.Select(agent => new NewCommand(agent, null, CommandTypes.HomeDelete, new HomeDeleteArgs { UserId = id })).ToList(),
                ct, options.Value.HomeDeleteCommandTtl);
            // Finished sessions only keep history of this user; they reference the row (foreign key) and go with it.
            await conn.ExecuteAsync(new CommandDefinition("DELETE FROM sessions WHERE user_id = @id", new { id }, tx, cancellationToken: ct));
            await conn.ExecuteAsync(new CommandDefinition("DELETE FROM users WHERE id = @id", new { id }, tx, cancellationToken: ct));
            await audit.WriteAsync(conn, tx, caller.Username, AuditActions.UserDeleted, user.Username,
                unconfirmed > 0 ? $"{unconfirmed} persistent-home session(s) an agent had not confirmed stopping: that agent stops them when it is back, and deletes their homes then if its home.delete has not expired" : null, http, ct);
            return TypedResults.NoContent();
        }, ct);
        tokenUsers.Invalidate(id);
        if (result.Result is NoContent && homeDeletes is not null) outbox.NotifyWritten(homeDeletes);
        return result;
    }

    private static void ValidatePassword(Validation v, string? password, bool required)
    {
        if (password is null)
        {
            if (required) v.Add("password", "is required");
            return;
        }
        v.Require(password.Length >= MinPasswordLength, "password", $"must be at least {MinPasswordLength} characters");
        v.Require(password.Length <= MaxPasswordLength, "password", $"must be at most {MaxPasswordLength} characters");
    }

    /// <summary>
    /// Locks the caller's and the target's rows, always in id order so two admins changing each other wait instead of
    /// deadlocking. The caller's admin status was checked when the token was validated, before the transaction; two admins
    /// disabling each other at the same moment both passed that check, so it is made again here, under the lock.
    /// </summary>
    private static async Task<(UserRecord? Caller, UserRecord? Target)> LockCallerAndTargetAsync(
        DbConnection conn, DbTransaction tx, Db db, string callerId, string targetId, CancellationToken ct)
    {
        if (callerId == targetId)
        {
            var both = await FindAsync(conn, tx, callerId, db.ForUpdate, ct);
            return (both, both);
        }
        var callerFirst = string.CompareOrdinal(callerId, targetId) < 0;
        var first = await FindAsync(conn, tx, callerFirst ? callerId : targetId, db.ForUpdate, ct);
        var second = await FindAsync(conn, tx, callerFirst ? targetId : callerId, db.ForUpdate, ct);
        return callerFirst ? (first, second) : (second, first);
    }

    /// <summary>A refusal when the caller, read under the lock, is no longer an enabled admin holding a current token.</summary>
    private static JsonHttpResult<ApiError>? CallerStillAdmin(UserRecord? caller, HttpContext http)
    {
        var tokenVersion = http.User.FindFirst(TokenIssuer.TokenVersionClaim)?.Value;
        if (caller is null || caller.Disabled
            || (tokenVersion is not null && tokenVersion != caller.TokenVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            return ApiErrors.Of(StatusCodes.Status401Unauthorized, "Unauthorized", "Your account was changed while this request ran; sign in again.");
        if (caller.Role != Roles.Admin)
            return ApiErrors.Forbidden("This needs the admin role.");
        return null;
    }

    private static Task<long> OtherEnabledAdminsAsync(DbConnection conn, DbTransaction tx, string exceptId, CancellationToken ct) =>
        conn.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT COUNT(*) FROM users WHERE role = @role AND disabled = @disabled AND id <> @exceptId",
            new { role = Roles.Admin, disabled = false, exceptId }, tx, cancellationToken: ct));

    private static Task<UserRecord?> FindAsync(DbConnection conn, DbTransaction? tx, string id, string forUpdate, CancellationToken ct) =>
        conn.QuerySingleOrDefaultAsync<UserRecord>(new CommandDefinition(
            $"SELECT {UserRecord.Columns} FROM users WHERE id = @id{forUpdate}", new { id }, tx, cancellationToken: ct));
}
