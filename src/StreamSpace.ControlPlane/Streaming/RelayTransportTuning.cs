using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Kestrel socket transport settings for the stream relay, which moves far more bytes through the control plane
/// than the API does. Measured with bench/stream.sh (CPU per MiB and managed allocation per MiB; see the README's
/// benchmark section).
/// </summary>
internal static class RelayTransportTuning
{
    /// <summary>
    /// How far Kestrel reads a connection ahead of the application (default 1 MiB): 128 KiB is two relay frames,
    /// enough to keep each relay loop fed, while everything beyond waits in the kernel's socket buffer, where TCP
    /// flow control pushes back on the sender. With the default, 100 busy streams held up to 200 MiB in the
    /// control plane's pipes, and at 100 streams allocation per MiB halved and CPU per MiB dropped with 128 KiB.
    /// </summary>
    public const long MaxReadAheadBytes = 128 * 1024;

    /// <summary>
    /// Kestrel continues a connection's work on the thread that completed its socket operation instead of hopping
    /// twice more per message: from the socket completion to the application (thread-pool work item) and from the
    /// application's flush to the send loop (Kestrel's I/O queue). A relayed message arrives on one connection and
    /// leaves by another, so that was two dispatches (thread wake-ups, which this kind of virtual machine makes dear)
    /// per message through the control plane. bench/stream.sh at 100 streams: 145–156 → 237–259 MiB/s, CPU 12.3–13.1 →
    /// 7.1–7.9 ms/MiB; unchanged at 1 and 10 streams.
    /// </summary>
    /// <remarks>
    /// "Unsafe" because application code then runs on the I/O thread. For the API's connections that thread is still a
    /// thread-pool thread: the runtime hands their socket completions to the pool (DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS
    /// is not set, and must stay unset for the control plane), so a request doing slow work (a password hash, a SQLite
    /// query) holds one pool thread exactly as before, and only its own connection's I/O waits for it. Only a relay's two
    /// connections, once their request's own work is done, complete on the socket event thread itself
    /// (<see cref="PreferInlineCompletions"/>).
    /// </remarks>
    public const bool InlineScheduling = true;

    /// <summary>
    /// Puts the socket under this request (a viewer's or an agent's data WebSocket, about to relay) on inline
    /// completions (<see cref="InlineSocketCompletions"/>): with <see cref="InlineScheduling"/> a relayed message then
    /// goes from one socket to the other on the socket event thread, without a thread-pool hand-over. Call it only
    /// once the request's own work (ticket, database, audit) is done: what follows must never block.
    /// </summary>
    public static void PreferInlineCompletions(HttpContext http) =>
        InlineSocketCompletions.TryEnable(http.Features.Get<IConnectionSocketFeature>()?.Socket);

    public static IServiceCollection AddRelayTransportTuning(this IServiceCollection services)
    {
        // Large receive blocks (see RelayMemoryPool); replaces Kestrel's default factory, so it must not be TryAdd.
        services.AddSingleton<IMemoryPoolFactory<byte>, RelayMemoryPool.Factory>();
        services.Configure<SocketTransportOptions>(o =>
        {
            o.MaxReadBufferSize = MaxReadAheadBytes;
            o.UnsafePreferInlineScheduling = InlineScheduling;
        });
        return services;
    }
}
