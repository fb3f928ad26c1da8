namespace StreamSpace.Agent.Hosting;

/// <summary>
/// Where an agent keeps its state (session records, homes, command dedupe store) when the operator did not say
/// (<c>STREAMSPACE_AGENT_STATE</c>): the usual folder in the data folder (<c>&lt;data&gt;/agent-local</c> for the embedded
/// agent, <c>./data/agent-&lt;id&gt;</c> for a standalone one), unless sessions could never start there. As root,
/// sessions run as unprivileged accounts that must pass through every folder above the state folder; a checkout under
/// <c>/root</c> (mode 700) or a data folder made under umask 077 closes that path, and every start would be refused.
/// Then the state goes to a folder of its own under <see cref="DefaultSharedRoot"/>, named after the usual one so two
/// agents on one host keep theirs apart. A location that already holds sessions or homes keeps being used, so running
/// sessions are re-adopted and homes are found after a restart whatever changed.
/// </summary>
public static class StateFolderChoice
{
    public const string DefaultSharedRoot = "/var/lib/streamspace";

    /// <summary>The embedded agent's: <c>&lt;data folder&gt;/agent-local</c> unless that cannot work.</summary>
    public static (string Folder, string? Why) ForEmbedded(string dataFolder, string? configured, bool root, string sharedRoot = DefaultSharedRoot) =>
        Choose(Path.Combine(Path.GetFullPath(dataFolder), "agent-local"), configured, root, sharedRoot);

    /// <summary>The chosen folder, and why it is not <paramref name="usual"/> (null when it is).</summary>
    public static (string Folder, string? Why) Choose(string usual, string? configured, bool root, string sharedRoot = DefaultSharedRoot)
    {
        if (!string.IsNullOrWhiteSpace(configured)) return (Path.GetFullPath(configured), null);
        usual = Path.GetFullPath(usual);
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(usual)))[..12];
        var shared = Path.Combine(sharedRoot, $"{Path.GetFileName(usual)}-{hash}");
        if (InUse(shared))
            return (shared, $"it holds this agent's sessions or homes from an earlier start ({usual} did not suit then)");
        if (OperatingSystem.IsWindows() || !root || InUse(usual) || UnixFolders.OthersCannotEnter(Path.GetDirectoryName(usual)) is not { } closed)
            return (usual, null);
        return (shared, $"the session accounts cannot pass through {closed} (mode {UnixFolders.ModeOf(closed)}) " +
            $"to reach {usual}; set STREAMSPACE_AGENT_STATE to choose the place");
    }

    /// <summary>True when the folder holds a session or a home.</summary>
    private static bool InUse(string folder) =>
        new[] { "sessions", "homes" }.Any(sub => Directory.Exists(Path.Combine(folder, sub)) && Directory.EnumerateFileSystemEntries(Path.Combine(folder, sub)).Any());
}

/// <summary>Unix folder permissions as other accounts see them.</summary>
public static class UnixFolders
{
    /// <summary>The nearest of <paramref name="folder"/> and its ancestors that other users may not enter (no o+x), if any.</summary>
    public static string? OthersCannotEnter(string? folder)
    {
        if (OperatingSystem.IsWindows()) return null;
        for (var dir = folder is null ? null : Path.GetFullPath(folder); !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
        {
            if (Directory.Exists(dir) && (File.GetUnixFileMode(dir) & UnixFileMode.OtherExecute) == 0) return dir;
        }
        return null;
    }

    /// <summary>A file's permission bits in octal, as ls and chmod write them (e.g. 700).</summary>
    public static string ModeOf(string path) => OperatingSystem.IsWindows() ? "?" : Convert.ToString((int)File.GetUnixFileMode(path), 8);
}
