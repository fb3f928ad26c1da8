using System.Net.Sockets;
using System.Text;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>Readiness probe: a VNC server is ready once its socket accepts a connection and sends "RFB 003.00x\n".</summary>
internal static class VncBanner
{
    private const int BannerLength = 12;
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(2);

    /// <summary>The banner, or null when the server is not (yet) accepting RFB connections.</summary>
    public static async Task<string?> TryReadAsync(string socketPath, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ReadTimeout);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), timeout.Token);
            var buffer = new byte[BannerLength];
            var read = 0;
            while (read < BannerLength)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
                if (n == 0) return null;
                read += n;
            }
            var banner = Encoding.ASCII.GetString(buffer);
            return banner.StartsWith("RFB 003.", StringComparison.Ordinal) ? banner.TrimEnd('\n') : null;
        }
        catch (Exception ex) when (!ct.IsCancellationRequested && ex is SocketException or OperationCanceledException)
        {
            return null;
        }
    }
}
