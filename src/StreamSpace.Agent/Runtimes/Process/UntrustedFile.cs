using System.Text;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// Reading, as root, files a session user can replace: the pid, exit and log files in the session's <c>run/</c>
/// folder (theirs) and X lock files in <c>/tmp</c>. A plain read there would follow a link the user put in its place
/// (to a root-only file, whose lines would come back in a session's failure reason, or to <c>/dev/zero</c>), block for
/// ever on a FIFO (holding the session's lock and the monitor of every session), or load gigabytes of log. So these
/// reads never follow a link in the last part of the path, never wait, and read at most a bounded number of bytes.
/// </summary>
internal static class UntrustedFile
{
    /// <summary>The first <paramref name="maxBytes"/> bytes of a regular file as UTF-8; null when it is missing, not a
    /// regular file (a link, FIFO, socket or folder) or unreadable.</summary>
    public static string? ReadHead(string path, int maxBytes = 4096) => Read(path, maxBytes, fromEnd: false);

    /// <summary>The last <paramref name="maxBytes"/> bytes, as <see cref="ReadHead"/> (a log's tail).</summary>
    public static string? ReadTail(string path, int maxBytes = 64 * 1024) => Read(path, maxBytes, fromEnd: true);

    private static string? Read(string path, int maxBytes, bool fromEnd)
    {
        using var file = Posix.OpenNoFollow(path);
        if (file is null) return null;
        try
        {
            // A FIFO, socket or folder has no length of its own to read up to, and pread refuses them: only regular files get here.
            var length = RandomAccess.GetLength(file);
            var offset = fromEnd ? Math.Max(0, length - maxBytes) : 0;
            var buffer = new byte[(int)Math.Min(maxBytes, length - offset)];
            var read = 0;
            while (read < buffer.Length)
            {
                var n = RandomAccess.Read(file, buffer.AsSpan(read), offset + read);
                if (n == 0) break;
                read += n;
            }
            return Encoding.UTF8.GetString(buffer, 0, read);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            return null;
        }
    }
}
