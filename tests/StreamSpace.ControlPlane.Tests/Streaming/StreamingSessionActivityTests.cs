using Microsoft.Extensions.Time.Testing;
using StreamSpace.ControlPlane.Streaming;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>The in-memory side of activity recording: batching, and no lost input for long-idle viewers.</summary>
public sealed class StreamingSessionActivityTests
{
    [Fact]
    public void Input_is_reported_once_per_flush_with_the_latest_time()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-29T12:00:00Z"));
        var activity = new SessionActivity(clock);
        var mark = activity.Attach("s1");
        activity.TakeDirty().ShouldBeEmpty();
        mark.Touch();
        clock.Advance(TimeSpan.FromSeconds(1));
        mark.Touch();
        activity.TakeDirty().ShouldBe([("s1", clock.GetUtcNow())]);
        activity.TakeDirty().ShouldBeEmpty();
    }

    [Fact]
    public void An_idle_viewer_keeps_its_mark_so_input_after_a_long_pause_still_counts()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-29T12:00:00Z"));
        var activity = new SessionActivity(clock);
        var mark = activity.Attach("s1");
        mark.Touch();
        activity.TakeDirty();
        for (var flush = 0; flush < 5; flush++)
        {
            activity.TakeDirty().ShouldBeEmpty();
            activity.ForgetIdle();
        }
        clock.Advance(TimeSpan.FromMinutes(10));
        mark.Touch();
        activity.TakeDirty().ShouldBe([("s1", clock.GetUtcNow())]);

        activity.Detach(mark);
        for (var flush = 0; flush < 3; flush++)
        {
            activity.TakeDirty();
            activity.ForgetIdle();
        }
        activity.Count.ShouldBe(0); // no stream, no input: forgotten
    }
}
