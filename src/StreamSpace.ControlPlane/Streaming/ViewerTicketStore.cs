using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>A ticket as handed to the viewer: the secret itself is returned once and never stored.</summary>
public sealed record ViewerTicket(string Ticket, DateTimeOffset ExpiresAt);

/// <summary>
/// The user a consumed ticket was issued to, with the role they have now and the token version the ticket was issued
/// under (the user's current one: a ticket from before a change of it is refused).
/// </summary>
public sealed record TicketHolder(string UserId, string Username, string Role, int TokenVersion);

/// <summary>Why presenting a ticket failed; each maps to one HTTP status at the viewer endpoint.</summary>
public enum TicketRefusal { None, Unknown, Expired, AlreadyUsed, OtherSession, UserDisabled, TokensRevoked }

/// <summary>
/// Issues and consumes one-time viewer tickets (design §4, invariant 6): 32 random bytes, base64url,
/// stored as a SHA-256 hash, bound to one session and one user, valid ≤ 60 s, consumed atomically. A ticket keeps the
/// user's token version at issue: a password, role or access change after it (which bumps the version and ends the
/// user's API tokens) ends the ticket too.
/// </summary>
public sealed class ViewerTicketStore(Db db, TimeProvider time, IOptions<StreamingOptions> options)
{
    /// <summary>The token version of a ticket issued without one (before M0011, or by an older replica).</summary>
    internal const int UnrecordedTokenVersion = 0;

    /// <summary>Length of a ticket's secret. 256 bits: unguessable within its lifetime by any margin.</summary>
    private const int TicketBytes = 32;

    /// <summary>
    /// Issues a ticket for the caller, whose token carries <paramref name="tokenVersion"/>: written only while the user is
    /// enabled and still at that version, in the insert itself. Null when they are not any more: the caller's token was
    /// checked a moment ago, but a password or role change (the step that revokes a stolen token) may have come since,
    /// and a ticket stamped with the new version would have passed every later check.
    /// </summary>
    public async Task<ViewerTicket?> IssueAsync(string sessionId, string userId, int tokenVersion, CancellationToken ct)
    {
        var ticket = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(TicketBytes));
        var now = time.GetUtcNow();
        var expiresAt = now + options.Value.TicketLifetime;
        await using var conn = await db.OpenAsync(ct);
        var issued = await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO viewer_tickets (id, ticket_hash, session_id, user_id, token_version, expires_at, used_at, created_at)
            SELECT @id, @hash, @sessionId, u.id, u.token_version, @expiresAt, NULL, @now FROM users u
            WHERE u.id = @userId AND u.token_version = @tokenVersion AND u.disabled = @no
            """,
            new { id = Guid.NewGuid().ToString("N"), hash = Hash(ticket), sessionId, userId, tokenVersion, no = false, expiresAt, now },
            cancellationToken: ct));
        if (issued == 0) return null;
        // Expired tickets are worthless; dropping them here keeps the table small without a sweeper.
        await conn.ExecuteAsync(new CommandDefinition(
            "DELETE FROM viewer_tickets WHERE expires_at < @cutoff", new { cutoff = now - TimeSpan.FromHours(1) }, cancellationToken: ct));
        return new ViewerTicket(ticket, expiresAt);
    }

    /// <summary>
    /// Uses the ticket up for <paramref name="sessionId"/>. Any presentation of a live ticket consumes it,
    /// also a refused one (a ticket shown for the wrong session is treated as leaked, one of a disabled user or from
    /// before the user's token version moved on is burnt as well).
    /// </summary>
    public async Task<(TicketRefusal Refusal, TicketHolder? Holder)> ConsumeAsync(string ticket, string sessionId, CancellationToken ct)
    {
        if (!LooksLikeTicket(ticket)) return (TicketRefusal.Unknown, null);
        var now = time.GetUtcNow();
        await using var conn = await db.OpenAsync(ct);
        var row = await conn.QuerySingleOrDefaultAsync<TicketRow>(new CommandDefinition(
            """
            SELECT t.id AS Id, t.session_id AS SessionId, t.user_id AS UserId, t.token_version AS TokenVersion, t.expires_at AS ExpiresAt,
                   t.used_at AS UsedAt, u.disabled AS UserDisabled, u.username AS Username, u.role AS UserRole, u.token_version AS UserTokenVersion
            FROM viewer_tickets t LEFT JOIN users u ON u.id = t.user_id
            WHERE t.ticket_hash = @hash
            """,
            new { hash = Hash(ticket) }, cancellationToken: ct));
        if (row is null) return (TicketRefusal.Unknown, null);
        if (row.UsedAt is not null) return (TicketRefusal.AlreadyUsed, null);
        if (row.ExpiresAt <= now) return (TicketRefusal.Expired, null);
        // The atomic consume: of two racing presentations exactly one sees a row count of 1.
        var consumed = await conn.ExecuteAsync(new CommandDefinition(
            "UPDATE viewer_tickets SET used_at = @now WHERE id = @id AND used_at IS NULL AND expires_at > @now",
            new { now, id = row.Id }, cancellationToken: ct));
        if (consumed != 1) return (TicketRefusal.AlreadyUsed, null);
        if (row.SessionId != sessionId) return (TicketRefusal.OtherSession, null);
        if (row.UserDisabled is null or true) return (TicketRefusal.UserDisabled, null);
        // 0: issued before tickets recorded a version (M0011 gave those 0; users start at 1), or by a replica that does not
        // record it yet during a rolling upgrade. Such a ticket is judged as before: by the user's version now.
        var issuedAt = row.TokenVersion == UnrecordedTokenVersion ? row.UserTokenVersion ?? 0 : row.TokenVersion;
        if (row.UserTokenVersion != issuedAt) return (TicketRefusal.TokensRevoked, null);
        return (TicketRefusal.None, new TicketHolder(row.UserId, row.Username ?? "", row.UserRole ?? "", issuedAt));
    }

    /// <summary>A ticket is exactly 43 base64url characters; anything else (a JWT, say) is refused without a query.</summary>
    private static bool LooksLikeTicket(string ticket) =>
        ticket.Length == Base64Url.GetEncodedLength(TicketBytes) && Base64Url.IsValid(ticket);

    internal static string Hash(string ticket) => Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(ticket)));

    private sealed record TicketRow
    {
        public required string Id { get; init; }
        public required string SessionId { get; init; }
        public required string UserId { get; init; }
        /// <summary>The user's token version when the ticket was issued.</summary>
        public int TokenVersion { get; init; }
        public DateTimeOffset ExpiresAt { get; init; }
        public DateTimeOffset? UsedAt { get; init; }
        /// <summary>Null when the user row is gone.</summary>
        public bool? UserDisabled { get; init; }
        public string? Username { get; init; }
        public string? UserRole { get; init; }
        public int? UserTokenVersion { get; init; }
    }
}
