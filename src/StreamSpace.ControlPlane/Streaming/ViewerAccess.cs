using System.Collections.Concurrent;
using System.Net.WebSockets;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Ends open viewer streams whose user may no longer view them. A ticket is checked when the viewer connects, and a
/// stream then lasts as long as the viewer keeps it open: without this, a user disabled, deleted or whose tokens were
/// revoked (a password or role change bumps the token version) kept the keyboard and mouse of their desktop, and an admin demoted to
/// user kept viewing other people's sessions, for as long as the tab stayed open. Whenever a user's row changes
/// (<see cref="TokenUserLookup.Changed"/>: this replica's own changes, and on PostgreSQL every replica's), each stream
/// of that user on this replica is checked again against the row as it is now, and ended with
/// <see cref="EndedReason"/> unless the row still allows it. Changes that take nothing away (a new quota) end nothing.
/// </summary>
public sealed class ViewerAccess : IDisposable
{
    public const string EndedReason = "Your access to this session has ended; sign in again to view it.";

    private readonly ConcurrentDictionary<Grant, byte> _grants = new();
    private readonly TokenUserLookup _users;
    private readonly ILogger<ViewerAccess> _logger;

    public ViewerAccess(TokenUserLookup users, ILogger<ViewerAccess> logger)
    {
        _users = users;
        _logger = logger;
        _users.Changed += OnChanged;
    }

    /// <summary>
    /// Tracks a stream of <paramref name="holder"/> on a session of <paramref name="sessionOwnerId"/> until the grant is
    /// disposed; its <see cref="Grant.Ended"/> is cancelled when the access ends, also when it is already gone here.
    /// </summary>
    /// <remarks>
    /// The ticket was checked against the user's row a moment before, but a change that committed after that check and
    /// whose notice arrived before the grant was tracked here would find no grant to end. So the row is read once more
    /// after tracking: a change from then on finds the grant, and one before it shows in this read.
    /// </remarks>
    public async Task<Grant> TrackAsync(TicketHolder holder, string sessionOwnerId, CancellationToken ct)
    {
        var grant = new Grant(this, holder.UserId, holder.TokenVersion, sessionOwnerId);
        _grants[grant] = 0;
        try
        {
            var user = await _users.FindAsync(holder.UserId, ct);
            if (!Allows(user, grant))
            {
                _logger.LogInformation("Refusing a viewer stream of user {UserId} on a session of {Owner}: {Why}", grant.UserId, grant.SessionOwnerId, Why(user, grant));
                grant.End();
            }
        }
        catch
        {
            grant.Dispose();
            throw;
        }
        return grant;
    }

    /// <summary>Open streams tracked here, for tests and diagnostics.</summary>
    public int Count => _grants.Count;

    private void OnChanged(string? userId) => _ = RecheckAsync(userId);

    /// <summary>Checks every stream of <paramref name="userId"/> (null: of every user) against the user's row now.</summary>
    internal async Task RecheckAsync(string? userId)
    {
        foreach (var byUser in _grants.Keys.Where(g => userId is null || g.UserId == userId).GroupBy(g => g.UserId))
        {
            UserRecord? user;
            try
            {
                user = await _users.FindAsync(byUser.Key, CancellationToken.None);
            }
            catch (Exception ex)
            {
                // The database is out of reach: the streams keep running until the next change is heard.
                _logger.LogWarning(ex, "Could not check the viewer streams of user {UserId} after a change of the user", byUser.Key);
                continue;
            }
            foreach (var grant in byUser.Where(g => !Allows(user, g)))
            {
                _logger.LogInformation("Ending a viewer stream of user {UserId} on a session of {Owner}: {Why}", grant.UserId, grant.SessionOwnerId, Why(user, grant));
                grant.End();
            }
        }
    }

    private static bool Allows(UserRecord? user, Grant grant) =>
        user is { Disabled: false } && user.TokenVersion == grant.TokenVersion && (grant.SessionOwnerId == user.Id || user.Role == Roles.Admin);

    private static string Why(UserRecord? user, Grant grant) => user switch
    {
        null => "the user was deleted",
        { Disabled: true } => "the user was disabled",
        _ when user.TokenVersion != grant.TokenVersion => "the user's tokens were revoked (password or role change)",
        _ => "the user is no longer an admin and the session is somebody else's",
    };

    public void Dispose() => _users.Changed -= OnChanged;

    /// <summary>One open stream's access.</summary>
    public sealed class Grant : IDisposable
    {
        private readonly ViewerAccess _owner;
        private readonly CancellationTokenSource _cts = new();

        internal Grant(ViewerAccess owner, string userId, int tokenVersion, string sessionOwnerId)
        {
            _owner = owner;
            UserId = userId;
            TokenVersion = tokenVersion;
            SessionOwnerId = sessionOwnerId;
        }

        public string UserId { get; }
        public int TokenVersion { get; }
        public string SessionOwnerId { get; }

        /// <summary>Cancelled when the access ended.</summary>
        public CancellationToken Ended => _cts.Token;

        /// <summary>The close the viewer gets when its access ended.</summary>
        public static (WebSocketCloseStatus Status, string Reason) Close => (WebSocketCloseStatus.PolicyViolation, EndedReason);

        internal void End()
        {
            try
            {
                _cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream ended by itself meanwhile.
            }
        }

        public void Dispose()
        {
            _owner._grants.TryRemove(this, out _);
            _cts.Dispose();
        }
    }
}
