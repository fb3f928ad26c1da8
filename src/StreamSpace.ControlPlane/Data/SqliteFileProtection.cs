namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Keeps the SQLite database readable by the control plane's own account only (0600). It holds the token signing key
/// and every password and agent-token hash, and the embedded agent's sessions run as other local accounts that pass
/// through the data folder to reach their own state (it must be searchable by them, see the agent's state folder):
/// a file created under the usual umask 022 (0644) let any of them copy the signing key and forge an admin token.
/// The file is created 0600 before SQLite first opens it, an existing one is tightened, and SQLite gives its
/// <c>-wal</c>/<c>-shm</c>/<c>-journal</c> files the database file's permissions (tightened here too if left from before).
/// </summary>
public static class SqliteFileProtection
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OthersAndGroup =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Creates or tightens the database file and its companions; returns the files tightened, their former and new modes.</summary>
    public static IReadOnlyList<(string Path, UnixFileMode Was, UnixFileMode Now)> Apply(string databasePath)
    {
        if (OperatingSystem.IsWindows()) return [];
        if (!File.Exists(databasePath))
        {
            try
            {
                // An empty file is a valid empty SQLite database: SQLite then opens it instead of creating it with umask bits.
                new FileStream(databasePath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerOnly }).Dispose();
            }
            catch (IOException) when (File.Exists(databasePath))
            {
                // created meanwhile (another replica's start): tightened below like any existing file
            }
        }
        var tightened = new List<(string, UnixFileMode, UnixFileMode)>();
        foreach (var file in new[] { databasePath, databasePath + "-wal", databasePath + "-shm", databasePath + "-journal" })
        {
            if (!File.Exists(file)) continue;
            var mode = File.GetUnixFileMode(file);
            if ((mode & OthersAndGroup) == 0) continue;
            File.SetUnixFileMode(file, mode & ~OthersAndGroup);
            tightened.Add((file, mode, mode & ~OthersAndGroup));
        }
        return tightened;
    }
}
