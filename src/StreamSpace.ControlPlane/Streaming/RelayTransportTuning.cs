using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

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

    public static IServiceCollection AddRelayTransportTuning(this IServiceCollection services)
    {
        // Large receive blocks (see RelayMemoryPool); replaces Kestrel's default factory, so it must not be TryAdd.
        services.AddSingleton<IMemoryPoolFactory<byte>, RelayMemoryPool.Factory>();
        services.Configure<SocketTransportOptions>(o => o.MaxReadBufferSize = MaxReadAheadBytes);
        return services;
    }
}
