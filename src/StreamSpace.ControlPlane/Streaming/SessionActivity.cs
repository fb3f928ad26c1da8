using System.Collections.Concurrent;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// The last viewer → session input time per session, kept in memory by the relay and written to
/// <c>sessions.last_activity_at</c> in batches by <see cref="SessionActivityFlusher"/>, so a busy
/// viewer costs no database write per key press.
/// </summary>
public sealed class SessionActivity(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Mark> _marks = new(StringComparer.Ordinal);
    /// <summary>Serializes attach/detach against forgetting (cold paths: once per stream, once per flush); touches stay lock-free.</summary>
    private readonly Lock _membership = new();

    /// <summary>
    /// The relay's handle for one session while a stream runs; touching it is a clock read and a field
    /// write. Call <see cref="Detach"/> when the stream ends.
    /// </summary>
    public Mark Attach(string sessionId)
    {
        lock (_membership)
        {
            var mark = _marks.GetOrAdd(sessionId, id => new Mark(id, time));
            mark.Users++;
            return mark;
        }
    }

    public void Detach(Mark mark)
    {
        lock (_membership) mark.Users--;
    }

    /// <summary>Sessions with input since their last flush, with the latest input time; marks them clean.</summary>
    public IReadOnlyList<(string SessionId, DateTimeOffset At)> TakeDirty()
    {
        var dirty = new List<(string, DateTimeOffset)>();
        foreach (var mark in _marks.Values)
        {
            if (mark.TakeIfDirty() is { } at) dirty.Add((mark.SessionId, at));
        }
        return dirty;
    }

    /// <summary>
    /// Puts back what <see cref="TakeDirty"/> took when writing it failed, so the next flush writes it: a mark is dirty
    /// again unless a later flush already took it. Input that came meanwhile stays, being later.
    /// </summary>
    public void Restore(IEnumerable<(string SessionId, DateTimeOffset At)> taken)
    {
        lock (_membership)
        {
            foreach (var (id, at) in taken)
                _marks.GetOrAdd(id, key => new Mark(key, time)).Restore(at);
        }
    }

    /// <summary>The last input this replica saw for the session, written to the database or not; null when it saw none lately.</summary>
    public DateTimeOffset? LastInput(string sessionId) => _marks.TryGetValue(sessionId, out var mark) ? mark.LastInput : null;

    /// <summary>
    /// Forgets sessions without streams and without input since their last flush, so the map does not
    /// grow with old sessions. A mark still attached to a stream is kept: its next touch must count.
    /// </summary>
    public void ForgetIdle()
    {
        lock (_membership)
        {
            foreach (var (id, mark) in _marks)
            {
                if (mark.Users == 0 && mark.IsIdle) _marks.TryRemove(new KeyValuePair<string, Mark>(id, mark));
            }
        }
    }

    internal int Count => _marks.Count;

    public sealed class Mark(string sessionId, TimeProvider time)
    {
        private long _lastInputUtcTicks;
        private long _flushedUtcTicks;
        private int _idleFlushes;

        public string SessionId { get; } = sessionId;

        /// <summary>Streams attached; guarded by the owner's membership lock.</summary>
        internal int Users { get; set; }

        internal bool IsIdle => Volatile.Read(ref _idleFlushes) > 1;

        public void Touch() => Volatile.Write(ref _lastInputUtcTicks, time.GetUtcNow().UtcTicks);

        internal DateTimeOffset? LastInput => Volatile.Read(ref _lastInputUtcTicks) is var last and > 0 ? new DateTimeOffset(last, TimeSpan.Zero) : null;

        /// <summary>Undoes the flush that took <paramref name="at"/> (the flusher's own thread, like <see cref="TakeIfDirty"/>).</summary>
        internal void Restore(DateTimeOffset at)
        {
            // A mark forgotten meanwhile comes back with the input it had; a later touch is never moved back.
            var ticks = at.UtcTicks;
            var last = Volatile.Read(ref _lastInputUtcTicks);
            while (last < ticks && Interlocked.CompareExchange(ref _lastInputUtcTicks, ticks, last) is var seen && seen != last) last = seen;
            if (_flushedUtcTicks == ticks) _flushedUtcTicks = 0;
            Volatile.Write(ref _idleFlushes, 0);
        }

        internal DateTimeOffset? TakeIfDirty()
        {
            var last = Volatile.Read(ref _lastInputUtcTicks);
            if (last == 0 || last == _flushedUtcTicks)
            {
                Interlocked.Increment(ref _idleFlushes);
                return null;
            }
            _flushedUtcTicks = last;
            Volatile.Write(ref _idleFlushes, 0);
            return new DateTimeOffset(last, TimeSpan.Zero);
        }
    }
}
