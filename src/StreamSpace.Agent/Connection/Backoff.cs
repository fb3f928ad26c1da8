namespace StreamSpace.Agent.Connection;

/// <summary>
/// Exponential backoff with full jitter (contract §8): attempt n waits a uniformly random time in
/// [0, min(max, min·2ⁿ)]. Full jitter spreads a fleet of agents reconnecting after a control-plane restart
/// instead of having them retry in lock-step. Not thread-safe; one instance per connection loop.
/// </summary>
public sealed class Backoff
{
    private readonly TimeSpan _min;
    private readonly TimeSpan _max;
    private readonly Random _random;
    private int _attempt;

    public Backoff(TimeSpan min, TimeSpan max, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(min, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, min);
        _min = min;
        _max = max;
        _random = random;
    }

    /// <summary>Failed attempts since the last <see cref="Reset"/>.</summary>
    public int Attempt => _attempt;

    /// <summary>The upper bound of the next delay, before jitter.</summary>
    public TimeSpan CurrentCap
    {
        get
        {
            // 2^attempt overflows long before it matters: clamp the exponent.
            var factor = Math.Pow(2, Math.Min(_attempt, 30));
            var ticks = Math.Min(_max.Ticks, _min.Ticks * factor);
            return TimeSpan.FromTicks((long)ticks);
        }
    }

    /// <summary>Returns the delay before the next attempt and advances the exponent.</summary>
    public TimeSpan NextDelay()
    {
        var cap = CurrentCap;
        _attempt++;
        return TimeSpan.FromTicks((long)(_random.NextDouble() * cap.Ticks));
    }

    /// <summary>After a connection that stayed up (a heartbeat interval) the next failure starts from the minimum again.</summary>
    public void Reset() => _attempt = 0;
}
