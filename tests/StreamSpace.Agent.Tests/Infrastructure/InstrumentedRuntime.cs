using System.Threading.Channels;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Runtimes.Simulated;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests;

/// <summary>
/// The simulated runtime plus two instruments the connection tests need: it counts executions (to prove
/// at-most-once) and can hold a session.start until the test releases it (a deliberately slow start).
/// </summary>
internal sealed class InstrumentedRuntime : ISessionRuntime
{
    private readonly SimulatedRuntime _inner = new();
    private int _starts;

    public int Starts => Volatile.Read(ref _starts);

    /// <summary>Awaited before starting the named session.</summary>
    public Dictionary<string, Task> HoldStart { get; } = [];

    public string Platform => _inner.Platform;
    /// <summary>What the runtime says about session limits (the simulated runtime says nothing).</summary>
    public string? SessionLimits { get; init; }
    public ChannelReader<SessionStatusPayload> Observations => _inner.Observations;
    public Task InitializeAsync(CancellationToken ct) => _inner.InitializeAsync(ct);
    public IReadOnlyList<SessionInventoryItem> Inventory() => _inner.Inventory();

    public async Task StartAsync(SessionStartArgs args, CancellationToken ct)
    {
        Interlocked.Increment(ref _starts);
        if (HoldStart.TryGetValue(args.SessionId, out var hold)) await hold.WaitAsync(ct);
        await _inner.StartAsync(args, ct);
    }

    public Task StopAsync(string sessionId, CancellationToken ct) => _inner.StopAsync(sessionId, ct);
    public Task HibernateAsync(string sessionId, CancellationToken ct) => _inner.HibernateAsync(sessionId, ct);
    public Task WakeAsync(string sessionId, CancellationToken ct) => _inner.WakeAsync(sessionId, ct);
    public Task<Stream> ConnectVncAsync(string sessionId, CancellationToken ct) => _inner.ConnectVncAsync(sessionId, ct);
    public ValueTask DisposeAsync() => _inner.DisposeAsync();
}
