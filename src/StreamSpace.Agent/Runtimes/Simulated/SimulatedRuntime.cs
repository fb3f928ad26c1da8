using System.Collections.Concurrent;
using System.Threading.Channels;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Runtimes.Simulated;

/// <summary>
/// Load tests only (never a default): sessions are records in memory that start and stop instantly, so one
/// machine can pose as many agents with many sessions. It has no VNC server.
/// </summary>
public sealed class SimulatedRuntime : ISessionRuntime
{
    private readonly ConcurrentDictionary<string, string> _sessions = new();
    private readonly Channel<SessionStatusPayload> _observations = Channel.CreateUnbounded<SessionStatusPayload>();

    public string Platform => Platforms.Simulated;

    public ChannelReader<SessionStatusPayload> Observations => _observations.Reader;

    public Task InitializeAsync(CancellationToken ct) => Task.CompletedTask;

    public IReadOnlyList<SessionInventoryItem> Inventory() =>
        [.. _sessions.Select(s => new SessionInventoryItem { SessionId = s.Key, State = s.Value }).OrderBy(s => s.SessionId, StringComparer.Ordinal)];

    public Task StartAsync(SessionStartArgs args, CancellationToken ct)
    {
        if (_sessions.TryAdd(args.SessionId, ObservedStates.Running))
        {
            Report(args.SessionId, ObservedStates.Running);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(string sessionId, CancellationToken ct)
    {
        if (_sessions.TryRemove(sessionId, out _))
        {
            Report(sessionId, ObservedStates.Stopped);
        }
        return Task.CompletedTask;
    }

    public Task HibernateAsync(string sessionId, CancellationToken ct) => Set(sessionId, ObservedStates.Hibernated);

    public Task WakeAsync(string sessionId, CancellationToken ct) => Set(sessionId, ObservedStates.Running);

    /// <summary>Simulated sessions have no homes: there is never one to delete.</summary>
    public Task DeleteHomeAsync(string userId, CancellationToken ct) => Task.CompletedTask;

    public Task<Stream> ConnectVncAsync(string sessionId, CancellationToken ct) =>
        throw new SessionRuntimeException("the simulated runtime has no VNC server");

    private Task Set(string sessionId, string state)
    {
        if (!_sessions.ContainsKey(sessionId)) throw new SessionRuntimeException($"session {sessionId} is not on this agent");
        _sessions[sessionId] = state;
        Report(sessionId, state);
        return Task.CompletedTask;
    }

    private void Report(string sessionId, string state) =>
        _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = sessionId, State = state });

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
