using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The group-commit primitive under session creation, token lookups and hello writes.</summary>
public sealed class GroupCommitQueueTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Items_queued_while_a_batch_runs_are_handled_together_and_each_gets_its_own_result()
    {
        var batches = new List<int[]>();
        var firstBatchStarted = new TaskCompletionSource();
        var releaseFirstBatch = new TaskCompletionSource();
        await using var queue = new GroupCommitQueue<int, string>(async (items, _) =>
        {
            lock (batches) batches.Add(items.ToArray());
            if (items[0] == 0)
            {
                firstBatchStarted.SetResult();
                await releaseFirstBatch.Task;
            }
            return items.Select(i => $"item {i}").ToList();
        }, maxBatch: 100);

        var first = queue.EnqueueAsync(0, Ct);
        await firstBatchStarted.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        var rest = Enumerable.Range(1, 20).Select(i => queue.EnqueueAsync(i, Ct)).ToList();
        releaseFirstBatch.SetResult();

        (await first).ShouldBe("item 0");
        for (var i = 0; i < rest.Count; i++) (await rest[i]).ShouldBe($"item {i + 1}");
        batches.Count.ShouldBe(2);
        batches[1].ShouldBe(Enumerable.Range(1, 20).ToArray());
    }

    [Fact]
    public async Task A_failing_batch_fails_every_caller_of_that_batch_and_the_next_batch_still_runs()
    {
        var gate = new TaskCompletionSource();
        var firstStarted = new TaskCompletionSource();
        var calls = 0;
        await using var queue = new GroupCommitQueue<int, int>(async (items, _) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                firstStarted.SetResult();
                await gate.Task;
            }
            if (items.Contains(13)) throw new InvalidOperationException("database said no");
            return items.Select(i => i * 2).ToList();
        }, maxBatch: 100);

        var blocker = queue.EnqueueAsync(1, Ct);
        await firstStarted.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        var doomed = new[] { queue.EnqueueAsync(12, Ct), queue.EnqueueAsync(13, Ct) };
        gate.SetResult();
        (await blocker).ShouldBe(2);
        foreach (var d in doomed) (await Should.ThrowAsync<InvalidOperationException>(() => d)).Message.ShouldBe("database said no");
        (await queue.EnqueueAsync(21, Ct)).ShouldBe(42);
    }

    [Fact]
    public async Task A_batch_never_exceeds_its_bound()
    {
        var sizes = new List<int>();
        var gate = new TaskCompletionSource();
        await using var queue = new GroupCommitQueue<int, int>(async (items, _) =>
        {
            lock (sizes) sizes.Add(items.Count);
            await gate.Task;
            return items.ToList();
        }, maxBatch: 10);
        var all = Enumerable.Range(0, 35).Select(i => queue.EnqueueAsync(i, Ct)).ToList();
        gate.SetResult();
        (await Task.WhenAll(all)).ShouldBe(Enumerable.Range(0, 35).ToArray());
        sizes.ShouldAllBe(n => n <= 10);
        sizes.Sum().ShouldBe(35);
    }

    [Fact]
    public async Task Disposing_cancels_what_is_still_queued_instead_of_leaving_it_hanging()
    {
        var gate = new TaskCompletionSource();
        var queue = new GroupCommitQueue<int, int>(async (items, ct) =>
        {
            await gate.Task.WaitAsync(ct);
            return items.ToList();
        }, maxBatch: 1);
        var running = queue.EnqueueAsync(1, Ct);
        var waiting = queue.EnqueueAsync(2, Ct);
        await queue.DisposeAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => running);
        await Should.ThrowAsync<OperationCanceledException>(() => waiting);
        await Should.ThrowAsync<OperationCanceledException>(() => queue.EnqueueAsync(3, Ct));
    }
}
