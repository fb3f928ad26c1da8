using StreamSpace.Agent.Connection;

namespace StreamSpace.Agent.Tests.Connection;

public class BackoffTests
{
    private static readonly TimeSpan Min = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);

    [Fact]
    public void Cap_doubles_from_min_and_stops_at_max()
    {
        var backoff = new Backoff(Min, Max, new FixedRandom(1.0));
        var caps = new List<double>();
        for (var i = 0; i < 12; i++)
        {
            caps.Add(backoff.CurrentCap.TotalSeconds);
            backoff.NextDelay();
        }
        caps.ShouldBe([0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]);
    }

    [Fact]
    public void Delay_is_full_jitter_between_zero_and_the_cap()
    {
        new Backoff(Min, Max, new FixedRandom(0.0)).NextDelay().ShouldBe(TimeSpan.Zero);
        new Backoff(Min, Max, new FixedRandom(0.5)).NextDelay().ShouldBe(TimeSpan.FromMilliseconds(250));
        var top = new Backoff(Min, Max, new FixedRandom(0.999999));
        top.NextDelay().ShouldBeLessThan(Min);
        top.NextDelay().ShouldBeGreaterThan(TimeSpan.FromMilliseconds(999));
    }

    [Fact]
    public void Delays_stay_in_bounds_and_are_spread()
    {
        var backoff = new Backoff(Min, Max, new Random(42));
        var delays = new List<TimeSpan>();
        for (var i = 0; i < 200; i++)
        {
            var cap = backoff.CurrentCap;
            var delay = backoff.NextDelay();
            delay.ShouldBeGreaterThanOrEqualTo(TimeSpan.Zero);
            delay.ShouldBeLessThanOrEqualTo(cap);
            delays.Add(delay);
        }
        // Late attempts all share the 30 s cap; full jitter must spread them, not retry in lock-step.
        var late = delays.Skip(10).ToList();
        late.Distinct().Count().ShouldBeGreaterThan(150);
        late.Min().ShouldBeLessThan(TimeSpan.FromSeconds(5));
        late.Max().ShouldBeGreaterThan(TimeSpan.FromSeconds(25));
        delays.Max().ShouldBeLessThanOrEqualTo(Max);
    }

    [Fact]
    public void Reset_starts_from_the_minimum_again()
    {
        var backoff = new Backoff(Min, Max, new FixedRandom(1.0));
        for (var i = 0; i < 5; i++) backoff.NextDelay();
        backoff.Attempt.ShouldBe(5);
        backoff.Reset();
        backoff.Attempt.ShouldBe(0);
        backoff.CurrentCap.ShouldBe(Min);
    }

    [Fact]
    public void Many_attempts_do_not_overflow()
    {
        var backoff = new Backoff(Min, Max, new FixedRandom(1.0));
        for (var i = 0; i < 10_000; i++) backoff.NextDelay();
        backoff.CurrentCap.ShouldBe(Max);
    }

    [Fact]
    public void Bad_bounds_are_rejected()
    {
        Should.Throw<ArgumentOutOfRangeException>(() => new Backoff(TimeSpan.Zero, Max, Random.Shared));
        Should.Throw<ArgumentOutOfRangeException>(() => new Backoff(Max, Min, Random.Shared));
    }
}
