using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace StreamSpace.Agent.Commands;

/// <summary>
/// Replaces a file so that after a crash or power loss it holds either the old or the new content, never an empty
/// or half-written one: the new content goes to <c>&lt;path&gt;.tmp</c> and is fsynced before the rename (otherwise the
/// rename may reach the disk before the data, leaving a zero-length file), and the folder is fsynced after it (the
/// rename itself is an entry in the folder). A stray <c>.tmp</c> is what a crash before the rename leaves.
/// </summary>
internal static partial class DurableFile
{
    public const string TempSuffix = ".tmp";

    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000; // the same on x86-64 and arm64

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncNative(SafeHandle fd);

    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + TempSuffix;
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        SyncFolder(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>fsync of a folder, which .NET cannot open as a file.</summary>
    private static void SyncFolder(string folder)
    {
        if (OperatingSystem.IsWindows()) return; // the agent runs on Linux; Windows has no fsync of a folder
        var fd = OpenNative(folder, O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open {folder} to flush it: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (FsyncNative(handle) != 0) throw new IOException($"cannot flush {folder}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }
}
