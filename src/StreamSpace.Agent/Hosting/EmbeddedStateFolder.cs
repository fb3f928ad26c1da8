namespace StreamSpace.Agent.Hosting;

/// <summary>
/// Where the embedded agent keeps its state (session records, homes, command dedupe store) when the operator did not
/// say (<c>STREAMSPACE_AGENT_STATE</c>): <c>&lt;data folder&gt;/agent-local</c>, unless sessions could never start
/// there. As root, sessions run as unprivileged accounts that must pass through every folder above the state folder;
/// a checkout under <c>/root</c> (mode 700) or a data folder made under umask 077 closes that path, and every start
/// would be refused. Then the state goes to a folder of its own under <see cref="DefaultSharedRoot"/>, named after the
/// data folder so two control planes on one host keep theirs apart. A location that already holds sessions or homes
/// keeps being used, so running sessions are re-adopted and homes are found after a restart whatever changed.
/// </summary>
public static class EmbeddedStateFolder
{
    public const string DefaultSharedRoot = "/var/lib/streamspace";

    /// <summary>The chosen folder, and why it is not the usual one (null when it is).</summary>
    public static (string Folder, string? Why) Choose(string dataFolder, string? configured, bool root, string sharedRoot = DefaultSharedRoot)
    {
        if (!string.IsNullOrWhiteSpace(configured)) return (Path.GetFullPath(configured), null);
        var usual = Path.Combine(Path.GetFullPath(dataFolder), "agent-local");
        var shared = Path.Combine(sharedRoot, $"agent-local-{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(usual)))[..12]}");
        if (InUse(shared))
            return (shared, $"it holds this agent's sessions or homes from an earlier start (the data folder's {usual} did not suit then)");
        if (OperatingSystem.IsWindows() || !root || InUse(usual) || UnixFolders.OthersCannotEnter(dataFolder) is not { } closed) return (usual, null);
        return (shared, $"the session accounts cannot pass through {closed} (mode {Convert.ToString((int)File.GetUnixFileMode(closed), 8)}) " +
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
}
