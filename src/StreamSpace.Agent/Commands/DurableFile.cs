using StreamSpace.Agent.Runtimes.Process;

namespace StreamSpace.Agent.Commands;

/// <summary>
/// Replaces a file so that after a crash or power loss it holds either the old or the new content, never an empty
/// or half-written one: the new content goes to <c>&lt;path&gt;.tmp</c> and is fsynced before the rename (otherwise the
/// rename may reach the disk before the data, leaving a zero-length file), and the folder is fsynced after it (the
/// rename itself is an entry in the folder). A stray <c>.tmp</c> is what a crash before the rename leaves.
/// </summary>
internal static class DurableFile
{
    public const string TempSuffix = ".tmp";
    /// <summary>Only the agent reads what it records (commands and session records name sessions and their users), whatever its folder's mode.</summary>
    public const UnixFileMode PrivateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + TempSuffix;
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = PrivateMode;
        using (var stream = new FileStream(temp, options))
        {
            // A temp file a crash left keeps its old mode through FileMode.Create: set it on the handle.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(stream.SafeFileHandle, PrivateMode);
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        Posix.SyncFolder(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}
