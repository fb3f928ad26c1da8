using System.Globalization;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>Reads /proc/&lt;pid&gt;/stat: start time (field 22) to tell a live process from a reused pid, and its state.</summary>
internal static class ProcFs
{
    /// <summary>State letter, start time (clock ticks since boot), process group and parent, or null when the pid does not exist.</summary>
    public static (char State, long StartTime, int Pgid, int Ppid)? Stat(int pid)
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
        return (fields[0][0], long.Parse(fields[22 - 3], CultureInfo.InvariantCulture), int.Parse(fields[5 - 3], CultureInfo.InvariantCulture),
            int.Parse(fields[4 - 3], CultureInfo.InvariantCulture));
    }

    public static long? StartTime(int pid) => Stat(pid)?.StartTime;

    /// <summary>True when <paramref name="pid"/> is the same process we recorded and has not exited (zombies count as dead).</summary>
    public static bool IsAlive(int pid, long startTime) =>
        pid > 0 && Stat(pid) is { } stat && stat.StartTime == startTime && stat.State is not ('Z' or 'X');

    /// <summary>Live processes of a process group (zombies excluded).</summary>
    public static IReadOnlyList<int> GroupMembers(int pgid) => GroupStates(pgid).Select(m => m.Pid).ToList();

    /// <summary>Live processes of a process group (zombies excluded) with their state letters and parents.</summary>
    public static IReadOnlyList<(int Pid, char State, int Ppid)> GroupStates(int pgid)
    {
        var members = new List<(int, char, int)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            if (Stat(pid) is { } stat && stat.Pgid == pgid && stat.State is not ('Z' or 'X'))
            {
                members.Add((pid, stat.State, stat.Ppid));
            }
        }
        return members;
    }

    /// <summary>
    /// Members of a group that will not run again until the group is continued: stopped (T, t), or held by a stopped
    /// vfork child. A parent that vforked (dash does for every command it runs; glibc's posix_spawn too) waits in the
    /// kernel, in state D, until the child execs or exits, and a SIGSTOP cannot stop it there; when the child is
    /// stopped before its exec, the parent stays in D for as long as the child is stopped (a full test run saw a
    /// hibernate wait 30 s for such a shell). Its kernel wait shows as <c>kernel_clone</c> (or
    /// <c>wait_for_vfork_done</c>) in /proc/PID/wchan; where the kernel hides wchan ("0"), a stopped child suffices.
    /// </summary>
    public static bool IsHeld((int Pid, char State, int Ppid) member, IReadOnlyList<(int Pid, char State, int Ppid)> group)
    {
        if (member.State is 'T' or 't') return true;
        if (member.State != 'D' || !group.Any(c => c.Ppid == member.Pid && c.State is 'T' or 't')) return false;
        string wchan;
        try { wchan = File.ReadAllText($"/proc/{member.Pid}/wchan").Trim(); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return false; }
        return wchan is "kernel_clone" or "0" or "" || wchan.Contains("vfork", StringComparison.Ordinal);
    }
}
