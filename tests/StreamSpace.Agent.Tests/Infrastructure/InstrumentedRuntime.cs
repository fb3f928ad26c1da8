using System.Threading.Channels;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Runtimes.Simulated;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests;

/// <summary>
/// The simulated runtime plus the instruments the connection tests need: it counts executions (to prove
/// at-most-once), can hold a session.start until the test releases it (a deliberately slow start) and can end a
/// session's app on its own or crash a session.
/// </summary>
internal sealed class InstrumentedRuntime : ISessionRuntime
{
    private readonly SimulatedRuntime _inner = new();
    private readonly Channel<SessionStatusPayload> _observations = Channel.CreateUnbounded<SessionStatusPayload>();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _exited = new();
    private int _starts;

    public InstrumentedRuntime() => _ = ForwardAsync();

    private async Task ForwardAsync()
    {
        await foreach (var status in _inner.Observations.ReadAllAsync()) _observations.Writer.TryWrite(status);
    }

    /// <summary>The session's app ends by itself: gone from the inventory, reported <c>exited</c>.</summary>
    public void ExitApp(string sessionId)
    {
        _exited[sessionId] = true;
        _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = sessionId, State = ObservedStates.Exited, Reason = "app exited with code 0" });
    }

    /// <summary>The session dies (its app killed, its Xvnc gone): gone from the inventory, reported <c>crashed</c> with <paramref name="reason"/>.</summary>
    public void Crash(string sessionId, string? reason)
    {
        _exited[sessionId] = true;
        _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = sessionId, State = ObservedStates.Crashed, Reason = reason });
    }

    public int Starts => Volatile.Read(ref _starts);

    /// <summary>Awaited before starting the named session.</summary>
    public Dictionary<string, Task> HoldStart { get; } = [];

    public string Platform => _inner.Platform;
    /// <summary>What the runtime says about session limits (the simulated runtime says nothing).</summary>
    public string? SessionLimits { get; init; }
    public ChannelReader<SessionStatusPayload> Observations => _observations.Reader;
    public Task InitializeAsync(CancellationToken ct) => _inner.InitializeAsync(ct);
    public IReadOnlyList<SessionInventoryItem> Inventory() => [.. _inner.Inventory().Where(s => !_exited.ContainsKey(s.SessionId))];

    /// <summary>How long a held start takes to clean up once cancelled (as the process runtime kills what it launched).</summary>
    public TimeSpan CleanupAfterCancel { get; init; }

    /// <summary>Set when a held start that was cancelled has finished its clean-up.</summary>
    public TaskCompletionSource CleanedUp { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task StartAsync(SessionStartArgs args, CancellationToken ct)
    {
        Interlocked.Increment(ref _starts);
        if (HoldStart.TryGetValue(args.SessionId, out var hold))
        {
            try
            {
                await hold.WaitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                await Task.Delay(CleanupAfterCancel, CancellationToken.None);
                CleanedUp.TrySetResult();
                throw;
            }
        }
        await _inner.StartAsync(args, ct);
    }

    public Task StopAsync(string sessionId, CancellationToken ct) => _inner.StopAsync(sessionId, ct);

    /// <summary>The user ids whose homes were deleted, in order.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> DeletedHomes { get; } = new();

    public Task DeleteHomeAsync(string userId, CancellationToken ct)
    {
        DeletedHomes.Enqueue(userId);
        return _inner.DeleteHomeAsync(userId, ct);
    }

    public Task HibernateAsync(string sessionId, CancellationToken ct) => _inner.HibernateAsync(sessionId, ct);
    public Task WakeAsync(string sessionId, CancellationToken ct) => _inner.WakeAsync(sessionId, ct);
    public Task<Stream> ConnectVncAsync(string sessionId, CancellationToken ct) => _inner.ConnectVncAsync(sessionId, ct);
    public ValueTask DisposeAsync() => _inner.DisposeAsync();
}
