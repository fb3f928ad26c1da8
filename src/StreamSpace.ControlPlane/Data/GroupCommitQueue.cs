using System.Threading.Channels;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Group commit for database work that arrives concurrently: callers queue items, and each worker takes everything
/// queued while the previous batch ran and handles it in ONE call (one query or one transaction). Under load the
/// database sees a few set-based statements instead of one round trip per request; a lone item is handled at once,
/// so an idle control plane answers as fast as before. Each caller gets its own result; when the batch fails, every
/// caller of that batch gets the exception (a database outage becomes 503 for each of them), so an item the database
/// would refuse on its own (such as text with U+0000, see <see cref="StorableText"/>) must never be queued.
/// </summary>
public sealed class GroupCommitQueue<TItem, TResult> : IAsyncDisposable
{
    private readonly Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<TResult>>> _run;
    private readonly int _maxBatch;
    private readonly Channel<Entry> _queue = Channel.CreateUnbounded<Entry>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _workers;
    private int _inBatches;

    /// <param name="run">Handles a batch; returns one result per item, in item order.</param>
    /// <param name="maxBatch">Upper bound of one batch, so a burst never builds one huge statement or transaction.</param>
    /// <param name="workers">Batches in flight at once.</param>
    public GroupCommitQueue(Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<TResult>>> run, int maxBatch, int workers = 1)
    {
        _run = run;
        _maxBatch = maxBatch;
        _workers = Enumerable.Range(0, workers).Select(_ => Task.Run(WorkAsync)).ToArray();
    }

    /// <summary>Items waiting for a batch or in one that runs now (for diagnostics and tests).</summary>
    public int Pending => _queue.Reader.Count + Volatile.Read(ref _inBatches);

    public Task<TResult> EnqueueAsync(TItem item, CancellationToken ct)
    {
        var entry = new Entry(item, new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously), ct);
        if (!_queue.Writer.TryWrite(entry))
            throw new OperationCanceledException("The control plane is shutting down.");
        return entry.Completion.Task;
    }

    private async Task WorkAsync()
    {
        var batch = new List<Entry>(_maxBatch);
        var items = new List<TItem>(_maxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(_stop.Token))
            {
                batch.Clear();
                items.Clear();
                while (batch.Count < _maxBatch && _queue.Reader.TryRead(out var entry))
                {
                    // A caller that gave up before its batch started is not worth a write.
                    if (entry.Cancellation.IsCancellationRequested) entry.Completion.TrySetCanceled(entry.Cancellation);
                    else { batch.Add(entry); items.Add(entry.Item); }
                }
                if (batch.Count == 0) continue;
                Interlocked.Add(ref _inBatches, batch.Count);
                try
                {
                    var results = await _run(items, _stop.Token);
                    for (var i = 0; i < batch.Count; i++) batch[i].Completion.TrySetResult(results[i]);
                }
                catch (Exception ex)
                {
                    foreach (var entry in batch) entry.Completion.TrySetException(ex);
                }
                finally
                {
                    Interlocked.Add(ref _inBatches, -batch.Count);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
        while (_queue.Reader.TryRead(out var entry)) entry.Completion.TrySetCanceled();
        _stop.Dispose();
    }

    private sealed record Entry(TItem Item, TaskCompletionSource<TResult> Completion, CancellationToken Cancellation);
}
