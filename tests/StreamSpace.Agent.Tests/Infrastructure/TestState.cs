using System.Text.Json;

namespace StreamSpace.Agent.Tests;

/// <summary>
/// A fresh agent state folder per test. Dispose kills the process group of every session recorded in it, so
/// no Xvnc outlives the test even when an assertion failed half-way.
/// </summary>
internal sealed class TestState : IDisposable
{
    private readonly List<int> _extraGroups = [];

    public TestState()
    {
        Folder = Path.Combine(Path.GetTempPath(), "streamspace-agent-tests", Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Folder);
    }

    public string Folder { get; }

    /// <summary>
    /// Makes the command dedupe store's folder unwritable the way a broken disk would, even for root (whom file modes
    /// do not stop): <c>&lt;state&gt;/commands</c> is moved aside and replaced by a plain file, so every write below it
    /// fails (ENOTDIR).
    /// </summary>
    public void BreakCommandsFolder()
    {
        var commands = Path.Combine(Folder, "commands");
        Directory.Move(commands, commands + ".moved");
        File.WriteAllText(commands, "not a folder");
    }

    /// <summary>Also kill this group on dispose (a session whose record was removed by the runtime).</summary>
    public void KillOnDispose(int pgid) => _extraGroups.Add(pgid);

    /// <summary>The session cgroups a runtime over <paramref name="stateFolder"/> made (process runtime limits), and their agent's parent.</summary>
    public static void RemoveCgroupsOf(string stateFolder)
    {
        if (!Environment.IsPrivilegedProcess) return;
        // The cgroup v1 hierarchies, and this machine's cgroup v2 hierarchy beside them.
        foreach (var (root, made) in new[] { ("/sys/fs/cgroup", "/sys/fs/cgroup/memory/streamspace"), ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/streamspace") })
        {
            if (!Directory.Exists(made)) continue;
            if (StreamSpace.Agent.Runtimes.Process.SessionCgroups.Detect(root, stateFolder, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, out _) is not { } cgroups) continue;
            cgroups.RemoveStaleAsync(new HashSet<string>(), TimeProvider.System, CancellationToken.None).GetAwaiter().GetResult();
            foreach (var parent in new[] { cgroups.MemoryDir("_"), cgroups.CpuDir("_"), cgroups.PidsDir("_") }.OfType<string>().Select(Path.GetDirectoryName).Distinct())
            {
                try { Directory.Delete(parent!); }
                catch (IOException) { }
            }
        }
    }

    public IEnumerable<int> RecordedGroups()
    {
        var sessions = Path.Combine(Folder, "sessions");
        if (!Directory.Exists(sessions)) yield break;
        foreach (var file in Directory.EnumerateFiles(sessions, "session.json", SearchOption.AllDirectories))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            yield return doc.RootElement.GetProperty("pgid").GetInt32();
        }
    }

    public void Dispose()
    {
        foreach (var pgid in RecordedGroups().Concat(_extraGroups).Distinct())
        {
            if (pgid > 1) TestProcesses.KillGroup(pgid);
        }
        RemoveCgroupsOf(Folder);
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
