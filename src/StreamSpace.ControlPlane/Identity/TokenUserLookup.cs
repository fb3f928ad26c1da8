using System.Collections.Concurrent;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>
/// The user row behind each API token, so a disabled user, a bumped token version or a deleted user ends the token at
/// once; reads of concurrent requests share one query (<see cref="KeyedLookup{TRow}"/>).
/// <para>
/// On PostgreSQL, while this replica listens for user changes (<see cref="DatabaseNotificationListener"/>), a row read
/// here is kept for up to <see cref="MaxAge"/> instead of being read again on every request: every change of a
/// <c>users</c> row notifies every replica from its own transaction (a trigger, migration M0008), and
/// <see cref="UsersApi"/> also drops the row here right after its commit, so this replica's next request sees its own
/// change without waiting for the notification. A read that overlapped any such drop is not kept (it may have read
/// the row before the change). The moment the listening connection fails nothing is kept, and it starts empty when
/// listening resumes (changes in between were not heard). <see cref="MaxAge"/> only bounds how long a change could be
/// missed if a connection died without this replica noticing. SQLite (one replica, an in-process database) reads every time.
/// </para>
/// </summary>
public sealed class TokenUserLookup(Db db, TimeProvider time) : IAsyncDisposable
{
    /// <summary>How long a kept row is used before it is read again, however quiet the notifications are.</summary>
    internal static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(10);

    /// <summary>More users than this are read every time (the rows are small; this only bounds the memory).</summary>
    internal const int MaxKept = 100_000;

    private readonly KeyedLookup<UserRecord> _users = new(db, "users", "id", UserRecord.Columns, u => u.Id, maxBatch: 500);
    private readonly ConcurrentDictionary<string, Kept> _kept = new(StringComparer.Ordinal);
    /// <summary>Counts every drop: a read that started before one is not kept.</summary>
    private long _drops;
    private volatile bool _keeping;
    private long _reads;

    /// <summary>Rows read from the database (not served from what is kept), for tests and diagnostics.</summary>
    public long DatabaseReads => Interlocked.Read(ref _reads);

    public async Task<UserRecord?> FindAsync(string userId, CancellationToken ct)
    {
        var startedAt = time.GetTimestamp();
        if (_keeping && _kept.TryGetValue(userId, out var kept) && time.GetElapsedTime(kept.ReadAt, startedAt) < MaxAge)
            return kept.User;
        var drops = Interlocked.Read(ref _drops);
        Interlocked.Increment(ref _reads);
        var user = await _users.FindAsync(userId, ct);
        if (user is null || !_keeping || Interlocked.Read(ref _drops) != drops || _kept.Count >= MaxKept) return user;
        var entry = new Kept(user, startedAt);
        _kept[userId] = entry;
        // A drop between the check above and the store: take the possibly outdated row back out.
        if (Interlocked.Read(ref _drops) != drops || !_keeping) _kept.TryRemove(KeyValuePair.Create(userId, entry));
        return user;
    }

    /// <summary>
    /// A user's row changed or is gone (the user id), after the change committed; null: any row may have changed unheard
    /// (this replica listens again after its listener lost the connection). Handlers must not block.
    /// </summary>
    public event Action<string?>? Changed;

    /// <summary>The user's row changed or is gone: read it again on its next request.</summary>
    public void Invalidate(string userId)
    {
        Interlocked.Increment(ref _drops);
        _kept.TryRemove(userId, out _);
        Changed?.Invoke(userId);
    }

    /// <summary>Changes are heard from now on (the listener is connected): keep rows read from now on.</summary>
    internal void StartCaching()
    {
        Interlocked.Increment(ref _drops);
        _kept.Clear();
        _keeping = db.IsPostgres;
        Changed?.Invoke(null);
    }

    /// <summary>Changes can no longer be heard: read every time until <see cref="StartCaching"/>.</summary>
    internal void StopCaching()
    {
        _keeping = false;
        Interlocked.Increment(ref _drops);
        _kept.Clear();
    }

    public ValueTask DisposeAsync() => _users.DisposeAsync();

    private sealed record Kept(UserRecord User, long ReadAt);
}
