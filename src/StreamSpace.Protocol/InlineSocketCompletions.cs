using System.Net.Sockets;
using System.Reflection;

namespace StreamSpace.Protocol;

/// <summary>
/// Runs a relay socket's completions on the runtime's socket event thread, where epoll reports them, instead of handing
/// each one to a thread-pool thread. A relayed message crosses four sockets between the viewer and the session (two in
/// the control plane, two in the agent); with completions handed over, each crossing wakes a pool thread, and at 100
/// streams about half the relay's CPU went into threads waking and switching (perf, bench/RESULTS.md 2026-12-01).
/// </summary>
/// <remarks>
/// Only for sockets whose continuations never block: the relay's copy loops (<see cref="RelayCopier"/>) and what
/// follows them (closing frames, logging). The runtime's process-wide switch
/// (<c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c>) would put every socket there, the control plane's request
/// handlers included (password hashing, SQLite, code after a database await), which is why it stays off.
/// The per-socket switch is the runtime's <c>Socket.PreferInlineCompletions</c>: internal, marked in the runtime as an
/// experimental API kept reachable by reflection for this purpose. Where it is missing (another runtime, another OS),
/// <see cref="TryEnable"/> does nothing and the relay works as before, only with the hand-over.
/// </remarks>
public static class InlineSocketCompletions
{
    /// <summary>Set to 0 to keep relay sockets on the thread pool like any other socket (to compare, or should it misbehave).</summary>
    public const string DisableVariable = "STREAMSPACE_RELAY_INLINE_COMPLETIONS";

    private const string EngineCountVariable = "DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT";

    private static readonly PropertyInfo? Property = OperatingSystem.IsLinux()
        ? typeof(Socket).GetProperty("PreferInlineCompletions", BindingFlags.Instance | BindingFlags.NonPublic)
        : null;

    private static readonly PropertyInfo? HandleProperty = OperatingSystem.IsLinux()
        ? typeof(SafeSocketHandle).GetProperty("PreferInlineCompletions", BindingFlags.Instance | BindingFlags.NonPublic)
        : null;

    private static readonly Action<Socket, bool>? Setter = Property?.SetMethod?.CreateDelegate<Action<Socket, bool>>();

    /// <summary>Whether relay sockets get inline completions in this process.</summary>
    public static bool Enabled { get; } = Setter is not null && Environment.GetEnvironmentVariable(DisableVariable) != "0";

    /// <summary>Moves <paramref name="socket"/>'s completions onto the socket event thread; false when that is not available.</summary>
    public static bool TryEnable(Socket? socket)
    {
        if (socket is null || !Enabled) return false;
        Setter!(socket, true);
        return true;
    }

    /// <summary>Whether <paramref name="socket"/>'s completions run on the socket event thread (for tests and diagnostics).</summary>
    /// <remarks>Read from the socket's handle, where the runtime keeps it: <c>Socket</c>'s own getter is trimmed away.</remarks>
    public static bool IsEnabledOn(Socket socket) => HandleProperty?.GetValue(socket.SafeHandle) is true;

    /// <summary>
    /// One socket event thread per core instead of the runtime's one per 30 cores, as the runtime itself does when all
    /// completions are inline: the relay's work runs on those threads, so with one of them a busy control plane would
    /// relay every stream on a single core. Must run before the process's first asynchronous socket operation; an
    /// operator's own <c>DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT</c> is kept.
    /// </summary>
    public static void ConfigureEventThreads()
    {
        if (!Enabled || Environment.GetEnvironmentVariable(EngineCountVariable) is not null) return;
        Environment.SetEnvironmentVariable(EngineCountVariable, Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}
