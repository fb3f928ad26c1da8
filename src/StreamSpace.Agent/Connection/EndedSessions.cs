using StreamSpace.Protocol;

namespace StreamSpace.Agent.Connection;

/// <summary>
/// Sessions that ended (exited, crashed, stopped) and that the control plane may not know about yet. A
/// <c>session.status</c> is not answered, so one written while the socket broke is lost without a trace, and one still
/// queued when the agent reconnects arrives after the control plane reconciled the hello, which no longer lists the
/// session: it would fail it "lost on agent" instead of ending it as observed. So every ended session is also listed in
/// each hello (with its ended state, which the control plane applies as the observation before it reconciles) until it
/// was carried by a hello or reported on a connection that then stayed up long enough for the keep-alive to have caught
/// a dead peer.
/// </summary>
internal sealed class EndedSessions
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private string? _connectionId;

    /// <summary>
    /// An ended session, why (its <c>session.status</c>'s reason, which the hello carries too: the control plane applies
    /// the hello's entry first, and a crash must fail with what crashed, not "reported at reconnect"), and the welcomed
    /// connection its <c>session.status</c> went out on (null: not yet sent), and when, as a <see cref="TimeProvider"/>
    /// timestamp: monotonic, so a wall clock stepped forward (NTP, a restored snapshot) settles nothing early.
    /// </summary>
    public sealed record Entry(string SessionId, string State, string? Reason, string? ConnectionId, long At);

    public int Count
    {
        get
        {
            lock (_gate) return _entries.Count;
        }
    }

    /// <summary>Every observation passes here: an ended one is kept, a live one (a later start of the id) forgets it.</summary>
    public void Observed(SessionStatusPayload status, long now)
    {
        lock (_gate)
        {
            if (status.State is ObservedStates.Exited or ObservedStates.Crashed or ObservedStates.Stopped)
                _entries[status.SessionId] = new Entry(status.SessionId, status.State, Shortened(status.Reason), _connectionId, now);
            else
                _entries.Remove(status.SessionId);
        }
    }

    /// <summary>
    /// A reason cut to what the control plane keeps of it, never inside a surrogate pair: an "Xvnc is gone" reason quotes
    /// a log the session user writes, and the protocol's JSON writes '&lt;' or any non-ASCII character as six bytes, so a
    /// few whole ones would carry the hello past the frame limit the control plane refuses.
    /// </summary>
    private static string? Shortened(string? reason) => reason is null ? null : TextLength.Cut(reason, SessionInventoryItem.MaxReasonLength);

    /// <summary>What the next hello lists beside the live sessions.</summary>
    public IReadOnlyList<Entry> Snapshot()
    {
        lock (_gate) return [.. _entries.Values];
    }

    /// <summary>
    /// A welcome answered the hello that carried <paramref name="carried"/>. The control plane applies a hello's ended
    /// sessions only after its welcome, and a connection that drops right then (or a database error there) loses them, so
    /// they stay listed: stamped with this connection, they are let go only once it stayed up long enough
    /// (<see cref="Settle"/>), like the statuses that ended since the hello and go out on this connection.
    /// </summary>
    public void Welcomed(string connectionId, IReadOnlyList<Entry> carried, long now)
    {
        lock (_gate)
        {
            // Only the very entry the hello carried: a newer observation of the same session replaced it since. A set: a
            // hello may carry thousands, and this runs before the connection reads anything (keep-alive pongs included).
            var wasCarried = carried.ToHashSet();
            var restamp = _entries.Values
                .Where(e => e.ConnectionId is null || wasCarried.Contains(e))
                .ToList();
            foreach (var entry in restamp)
            {
                _entries[entry.SessionId] = entry with { ConnectionId = connectionId, At = now };
            }
            _connectionId = connectionId;
        }
    }

    /// <summary>The connection ended: what ends from now on is reported after the next welcome.</summary>
    public void Disconnected(string connectionId)
    {
        lock (_gate)
        {
            if (_connectionId == connectionId) _connectionId = null;
        }
    }

    /// <summary>
    /// <paramref name="connectionId"/> is still up: what it reported at least <paramref name="age"/> ago went out long
    /// enough ago that a dead peer would have broken the connection by now, so the control plane has it.
    /// </summary>
    public void Settle(string connectionId, TimeProvider time, TimeSpan age)
    {
        lock (_gate)
        {
            // Called on every heartbeat: nothing to look at, nothing allocated.
            if (_entries.Count == 0) return;
            foreach (var entry in _entries.Values.Where(e => e.ConnectionId == connectionId && time.GetElapsedTime(e.At) >= age).ToList())
            {
                _entries.Remove(entry.SessionId);
            }
        }
    }
}
