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

    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + TempSuffix;
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        Posix.SyncFolder(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}
