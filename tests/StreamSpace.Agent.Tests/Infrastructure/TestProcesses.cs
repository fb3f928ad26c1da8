using System.Diagnostics;
using System.Globalization;

namespace StreamSpace.Agent.Tests;

/// <summary>Looks at real processes through /proc, independently of the code under test.</summary>
internal static class TestProcesses
{
    public static void KillGroup(int pgid)
    {
        using var kill = Process.Start("kill", ["-KILL", "--", $"-{pgid}"]);
        kill.WaitForExit();
    }

    /// <summary>(pid, state letter, uid) of every live (non-zombie) process in a process group.</summary>
    public static List<(int Pid, char State, int Uid)> Group(int pgid)
    {
        var members = new List<(int, char, int)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string stat, status;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
                status = File.ReadAllText(Path.Combine(dir, "status"));
            }
            catch (IOException)
            {
                continue;
            }
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var state = fields[0][0];
            if (int.Parse(fields[2], CultureInfo.InvariantCulture) != pgid || state is 'Z' or 'X') continue;
            var uidLine = status.Split('\n').First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            var uid = int.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            members.Add((pid, state, uid));
        }
        return members;
    }

    /// <summary>The parent pid of a process, or 0 when it is gone.</summary>
    public static int ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    public static string CommandName(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return "";
        }
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var stopwatch = Stopwatch.StartNew();
        while (!condition())
        {
            if (stopwatch.Elapsed > timeout) throw new TimeoutException($"timed out after {timeout.TotalSeconds} s waiting for {what}");
            await Task.Delay(50);
        }
    }
}
