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

    /// <summary>Also kill this group on dispose (a session whose record was removed by the runtime).</summary>
    public void KillOnDispose(int pgid) => _extraGroups.Add(pgid);

    /// <summary>The session cgroups a runtime over <paramref name="stateFolder"/> made (process runtime limits), and their agent's parent.</summary>
    public static void RemoveCgroupsOf(string stateFolder)
    {
        if (!Environment.IsPrivilegedProcess || !Directory.Exists("/sys/fs/cgroup/memory/streamspace")) return;
        if (StreamSpace.Agent.Runtimes.Process.SessionCgroups.Detect("/sys/fs/cgroup", stateFolder, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, out _) is not { } cgroups) return;
        cgroups.RemoveStaleAsync(new HashSet<string>(), TimeProvider.System, CancellationToken.None).GetAwaiter().GetResult();
        foreach (var parent in new[] { cgroups.MemoryDir("_"), cgroups.CpuDir("_"), cgroups.PidsDir("_") }.OfType<string>().Select(Path.GetDirectoryName))
        {
            try { Directory.Delete(parent!); }
            catch (IOException) { }
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
