using System.Net.Http.Headers;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Direct database setup for session, placement and agent tests: agent rows as the hub would leave them,
/// users with a given quota, and sessions in a given state. Tokens are issued by the app's own issuer
/// (the same JWTs login returns) so races with many users do not spend their time hashing passwords.
/// </summary>
internal static class SessionTestData
{
    /// <summary>
    /// Inserts or refreshes an agent row. Online agents get <c>last_heartbeat = now</c> so the hub's silence
    /// sweeper (30 s) leaves them alone for the duration of a test.
    /// </summary>
    public static async Task InsertAgentAsync(this ControlPlaneFixture cp, string agentId, string status = AgentStatus.Online,
        string platform = "process", int maxSessions = 10, bool draining = false)
    {
        var now = DateTimeOffset.UtcNow;
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            INSERT INTO agents (agent_id, token_hash, status, last_heartbeat, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
            VALUES (@agentId, @hash, @status, @now, @platform, 'default', @maxSessions, 0, @draining, @now, @now)
            ON CONFLICT (agent_id) DO UPDATE SET status = @status, last_heartbeat = @now, platform = @platform,
                max_sessions = @maxSessions, draining = @draining, updated_at = @now
            """,
            new { agentId, hash = AgentTokens.Hash(AgentTokens.Generate()), status, now, platform, maxSessions, draining });
    }

    /// <summary>A user inserted directly, with a bearer client; no password hashing.</summary>
    public static async Task<(HttpClient Client, string UserId, string Username)> QuickUserAsync(this ControlPlaneFixture cp, string prefix, int maxSessions = 5)
    {
        var username = ControlPlaneFixture.Unique(prefix);
        var now = DateTimeOffset.UtcNow;
        var user = new UserRecord
        {
            Id = Guid.NewGuid().ToString("N"), Username = username, PasswordHash = "unused", Role = Roles.User,
            MaxSessions = maxSessions, TokenVersion = 1, CreatedAt = now, UpdatedAt = now,
        };
        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
        {
            await conn.ExecuteAsync(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES (@Id, @Username, @PasswordHash, @Role, @Disabled, @MaxSessions, @TokenVersion, @CreatedAt, @UpdatedAt)
                """, user);
        }
        var (token, _) = cp.App.Services.GetRequiredService<TokenIssuer>().Issue(user);
        var client = cp.Client();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return (client, user.Id, username);
    }

    public static async Task InsertSessionAsync(this ControlPlaneFixture cp, string id, string userId, string username, string state,
        string? agentId = null, string template = "xterm")
    {
        var now = DateTimeOffset.UtcNow;
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            INSERT INTO sessions (id, user_id, username, template, state, state_reason, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@id, @userId, @username, @template, @state, NULL, @agentId, '250m', '256Mi', @persistent, @now, @now)
            """,
            new { id, userId, username, template, state, agentId, persistent = false, now });
    }

    /// <summary>
    /// Inserts <paramref name="count"/> ended sessions (terminated and failed, in turn) placed on <paramref name="agentId"/>
    /// in one set-based statement: the history a long-lived agent builds up.
    /// </summary>
    public static async Task InsertEndedSessionsAsync(this ControlPlaneFixture cp, string userId, string username, string agentId, int count)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        await conn.ExecuteAsync(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @count)
            INSERT INTO sessions (id, user_id, username, template, state, state_reason, agent_id, cpu, memory, persistent_home, created_at, updated_at)
            SELECT @prefix || i, @userId, @username, 'xterm', CASE WHEN i % 2 = 0 THEN 'terminated' ELSE 'failed' END, NULL, @agentId,
                '250m', '256Mi', @persistent, @now, @now
            FROM n
            """,
            new { count, prefix = $"{username}-xterm-ended", userId, username, agentId, persistent = false, now = DateTimeOffset.UtcNow });
    }

    public static async Task<T> ScalarAsync<T>(this ControlPlaneFixture cp, string sql, object? args = null)
    {
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        return (await conn.ExecuteScalarAsync<T>(sql, args))!;
    }
}
