using System.Threading.Channels;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Runtimes;

/// <summary>
/// Runs sessions on one platform. Handlers are idempotent (contract §5): starting a session that already runs
/// and stopping an unknown one both succeed. Failures throw <see cref="SessionRuntimeException"/> with a
/// message fit for the command result.
/// </summary>
public interface ISessionRuntime : IAsyncDisposable
{
    /// <summary>One of <see cref="Platforms"/>; reported in hello.</summary>
    string Platform { get; }

    /// <summary>Whether session cpu/memory limits are enforced, for the hello (<see cref="HelloPayload.SessionLimits"/>); null when the runtime does not say.</summary>
    string? SessionLimits => null;

    /// <summary>Observed changes (running, exited, crashed, hibernated, stopped) to report as <c>session.status</c>.</summary>
    ChannelReader<SessionStatusPayload> Observations { get; }

    /// <summary>Re-adopts sessions that survived an agent restart and starts watching them.</summary>
    Task InitializeAsync(CancellationToken ct);

    /// <summary>Every live session right now (invariant 4: the agent reports its full inventory).</summary>
    IReadOnlyList<SessionInventoryItem> Inventory();

    Task StartAsync(SessionStartArgs args, CancellationToken ct);
    Task StopAsync(string sessionId, CancellationToken ct);
    Task HibernateAsync(string sessionId, CancellationToken ct);
    Task WakeAsync(string sessionId, CancellationToken ct);

    /// <summary>
    /// Deletes the persistent home this agent keeps for <paramref name="userId"/> (the control plane deleted that user).
    /// Idempotent: no such home is success. Refused (<see cref="SessionRuntimeException"/>) while a session here still
    /// uses it.
    /// </summary>
    Task DeleteHomeAsync(string userId, CancellationToken ct);

    /// <summary>A byte stream to the session's VNC server (RFB), for the stream relay.</summary>
    Task<Stream> ConnectVncAsync(string sessionId, CancellationToken ct);
}

/// <summary>A session operation failed; the message goes into the command result.</summary>
public sealed class SessionRuntimeException : Exception
{
    public SessionRuntimeException(string message) : base(message) { }
    public SessionRuntimeException(string message, Exception inner) : base(message, inner) { }
    public SessionRuntimeException() { }

    /// <summary>
    /// Set when the failure is the session's state rather than a fault (a stream asked of a hibernated session):
    /// what a viewer is told, as the close reason of its stream.
    /// </summary>
    public string? ViewerReason { get; init; }
}
