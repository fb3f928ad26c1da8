using System.Globalization;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>Reads /proc/&lt;pid&gt;/stat: start time (field 22) to tell a live process from a reused pid, and its state.</summary>
internal static class ProcFs
{
    /// <summary>State letter and start time (clock ticks since boot), or null when the pid does not exist.</summary>
    public static (char State, long StartTime, int Pgid)? Stat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // The command name (field 2) is in parentheses and may contain spaces or ')': parse after the LAST ')'.
        var close = text.LastIndexOf(')');
        if (close < 0) return null;
        var fields = text[(close + 2)..].Split(' ');
        // fields[0] is field 3 (state); field N is fields[N - 3].
        return (fields[0][0], long.Parse(fields[22 - 3], CultureInfo.InvariantCulture), int.Parse(fields[5 - 3], CultureInfo.InvariantCulture));
    }

    public static long? StartTime(int pid) => Stat(pid)?.StartTime;

    /// <summary>True when <paramref name="pid"/> is the same process we recorded and has not exited (zombies count as dead).</summary>
    public static bool IsAlive(int pid, long startTime) =>
        pid > 0 && Stat(pid) is { } stat && stat.StartTime == startTime && stat.State is not ('Z' or 'X');

    /// <summary>Live processes of a process group (zombies excluded).</summary>
    public static IReadOnlyList<int> GroupMembers(int pgid) => GroupStates(pgid).Select(m => m.Pid).ToList();

    /// <summary>Live processes of a process group (zombies excluded) with their state letters.</summary>
    public static IReadOnlyList<(int Pid, char State)> GroupStates(int pgid)
    {
        var members = new List<(int, char)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            if (Stat(pid) is { } stat && stat.Pgid == pgid && stat.State is not ('Z' or 'X'))
            {
                members.Add((pid, stat.State));
            }
        }
        return members;
    }
}
