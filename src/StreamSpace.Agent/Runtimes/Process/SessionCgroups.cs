using System.Globalization;
using Microsoft.Extensions.Logging;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// A session's template resources enforced by the kernel: one cgroup per session in the cgroup v1 <c>memory</c> and
/// <c>cpu</c> hierarchies (<c>memory.limit_in_bytes</c>, and <c>memory.memsw.limit_in_bytes</c> at the same value where the
/// kernel accounts swap, so a session cannot spill past its memory into the host's swap; <c>cpu.cfs_quota_us</c> per
/// 100 ms period, from the moment Xvnc answers, before the app starts), and in <c>pids</c>
/// when the host has it (<c>pids.max</c>: a fork bomb in one session cannot take the agent host's process table),
/// joined by the session leader before it starts anything, so Xvnc, the app and everything they start are inside. Beyond the
/// limits, a cgroup holds every process of the session even when one leaves the process group (<c>setsid</c>), so a
/// stop kills them all. Each agent keeps its sessions under a parent of its own
/// (<c>streamspace/agent-&lt;hash of its state folder&gt;</c>), so agents sharing a host never touch each other's.
/// </summary>
/// <remarks>
/// Only cgroup v1 (separate per-controller hierarchies, as on this project's machines) is supported; on a
/// cgroup v2-only host, or when the agent is not root, <see cref="Detect"/> says why and sessions run without limits.
/// </remarks>
internal sealed class SessionCgroups
{
    /// <summary>The CFS period the CPU quota is expressed in (the kernel's default).</summary>
    public const long CfsPeriodMicros = 100_000;
    /// <summary>The smallest quota the kernel takes (1 ms per period, i.e. 10m); smaller cpu requests get this.</summary>
    public const long MinCfsQuotaMicros = 1_000;
    /// <summary>Exit code of the join step when the leader could not enter its cgroups.</summary>
    public const int JoinFailedExitCode = 125;

    /// <summary>Writes the shell's own pid into each cgroup.procs given before <c>--</c>, then execs the rest.</summary>
    public const string JoinScript = """
        while [ "$1" != "--" ]; do echo "$$" > "$1" || exit 125; shift; done
        shift
        exec "$@"
        """;

    private static readonly TimeSpan RemoveTimeout = TimeSpan.FromSeconds(5);

    private readonly string _memory;
    private readonly string _cpu;
    /// <summary>The pids hierarchy's parent, when the host has one.</summary>
    private readonly string? _pids;
    private readonly ILogger _logger;

    private SessionCgroups(string memoryParent, string cpuParent, string? pidsParent, bool limitsSwap, ILogger logger)
    {
        _memory = memoryParent;
        _cpu = cpuParent;
        _pids = pidsParent;
        LimitsSwap = limitsSwap;
        _logger = logger;
    }

    /// <summary>Whether sessions also get a process limit (the host has a cgroup v1 pids hierarchy).</summary>
    public bool LimitsProcesses => _pids is not null;

    /// <summary>
    /// Whether a session's swap counts against its memory limit (the kernel accounts swap: <c>memory.memsw.*</c>, i.e.
    /// <c>swapaccount=1</c>). Without it a session held at its memory limit can still push pages out to the host's swap.
    /// </summary>
    public bool LimitsSwap { get; }

    /// <summary>What the limits are, in words for an operator (the hello's <c>sessionLimits</c>).</summary>
    public string Describe(int maxProcesses)
    {
        var memory = LimitsSwap ? "memory limit including swap" : "memory limit (swap not counted: the kernel does not account it)";
        var processes = LimitsProcesses ? $"at most {maxProcesses} processes" : "no pids hierarchy, so no process limit";
        return $"enforced: a cgroup v1 per session (cpu quota, {memory}, {processes})";
    }

    private IEnumerable<string> Parents => _pids is null ? [_memory, _cpu] : [_memory, _cpu, _pids];

    /// <summary>
    /// The agent's cgroups under <paramref name="root"/> (normally <c>/sys/fs/cgroup</c>), or null with the reason
    /// when this host or process cannot enforce limits.
    /// </summary>
    public static SessionCgroups? Detect(string root, string stateFolder, ILogger logger, out string? unavailable)
    {
        unavailable = null;
        if (!Environment.IsPrivilegedProcess)
        {
            unavailable = "the agent does not run as root";
            return null;
        }
        var memory = Path.Combine(root, "memory");
        var cpu = Path.Combine(root, "cpu");
        if (!File.Exists(Path.Combine(memory, "memory.limit_in_bytes")) || !File.Exists(Path.Combine(cpu, "cpu.cfs_quota_us")))
        {
            unavailable = File.Exists(Path.Combine(root, "cgroup.controllers"))
                ? $"{root} is a cgroup v2 hierarchy, which the process runtime does not support yet"
                : $"no cgroup v1 memory and cpu hierarchies under {root}";
            return null;
        }
        var agent = "agent-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(stateFolder))))[..12];
        var pids = Path.Combine(root, "pids");
        var cgroups = new SessionCgroups(Path.Combine(memory, "streamspace", agent), Path.Combine(cpu, "streamspace", agent),
            File.Exists(Path.Combine(pids, "cgroup.procs")) ? Path.Combine(pids, "streamspace", agent) : null,
            File.Exists(Path.Combine(memory, "memory.memsw.limit_in_bytes")), logger);
        try
        {
            foreach (var parent in cgroups.Parents) Directory.CreateDirectory(parent);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            unavailable = $"cannot create cgroups under {root} ({ex.Message})";
            return null;
        }
        return cgroups;
    }

    /// <summary>The session's memory cgroup folder (its <c>memory.*</c> files).</summary>
    public string MemoryDir(string sessionId) => Path.Combine(_memory, sessionId);

    /// <summary>The session's cpu cgroup folder (its <c>cpu.*</c> files).</summary>
    public string CpuDir(string sessionId) => Path.Combine(_cpu, sessionId);

    /// <summary>The session's pids cgroup folder (its <c>pids.*</c> files); null without a pids hierarchy.</summary>
    public string? PidsDir(string sessionId) => _pids is null ? null : Path.Combine(_pids, sessionId);

    private IEnumerable<string> Dirs(string sessionId) => Parents.Select(parent => Path.Combine(parent, sessionId));

    /// <summary>
    /// Creates (or re-limits) the session's cgroups and returns the <c>cgroup.procs</c> files its leader joins
    /// (<see cref="JoinScript"/>). Memory and processes are limited from here on; the cpu quota is not set yet: Xvnc's
    /// start-up (about 0.6 s of CPU) is the platform's work, not the app's, and under a small template cpu it took 2-4
    /// times as long (250m: 1.25 s instead of 0.6 s) or, below ~30m, longer than the start timeout.
    /// <see cref="LimitCpu"/> sets the quota once Xvnc answers, before the app is started.
    /// </summary>
    public IReadOnlyList<string> Prepare(string sessionId, long memoryBytes, int maxProcesses)
    {
        try
        {
            foreach (var dir in Dirs(sessionId)) Directory.CreateDirectory(dir);
            var memory = MemoryDir(sessionId);
            var bytes = memoryBytes.ToString(CultureInfo.InvariantCulture);
            if (LimitsSwap)
            {
                // The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every write: lift the swap
                // limit first, so a re-limit to more memory than before is not refused, then set both to the same value.
                File.WriteAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes"), "-1");
                File.WriteAllText(Path.Combine(memory, "memory.limit_in_bytes"), bytes);
                File.WriteAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes"), bytes);
            }
            else
            {
                File.WriteAllText(Path.Combine(memory, "memory.limit_in_bytes"), bytes);
            }
            var cpu = CpuDir(sessionId);
            File.WriteAllText(Path.Combine(cpu, "cpu.cfs_period_us"), CfsPeriodMicros.ToString(CultureInfo.InvariantCulture));
            File.WriteAllText(Path.Combine(cpu, "cpu.cfs_quota_us"), "-1");
            if (PidsDir(sessionId) is { } pids) File.WriteAllText(Path.Combine(pids, "pids.max"), maxProcesses.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new SessionRuntimeException($"session {sessionId}: could not set up its cgroups ({ex.Message})", ex);
        }
        return [.. Dirs(sessionId).Select(dir => Path.Combine(dir, "cgroup.procs"))];
    }

    /// <summary>Sets the session's cpu quota: <paramref name="cpuMillicores"/> per <see cref="CfsPeriodMicros"/>, at least the kernel's smallest.</summary>
    public void LimitCpu(string sessionId, long cpuMillicores)
    {
        var quota = Math.Max(MinCfsQuotaMicros, cpuMillicores * CfsPeriodMicros / 1000);
        try
        {
            File.WriteAllText(Path.Combine(CpuDir(sessionId), "cpu.cfs_quota_us"), quota.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new SessionRuntimeException($"session {sessionId}: could not set its cpu limit ({ex.Message})", ex);
        }
    }

    /// <summary>The processes in the session's cgroup, including any that left its process group.</summary>
    public IReadOnlyList<int> Members(string sessionId) => [.. Pids(MemoryDir(sessionId))];

    /// <summary>True when the kernel's OOM killer acted inside the session's memory cgroup.</summary>
    public bool HitMemoryLimit(string sessionId)
    {
        try
        {
            foreach (var line in File.ReadLines(Path.Combine(MemoryDir(sessionId), "memory.oom_control")))
            {
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal) && long.TryParse(line.AsSpan(9), CultureInfo.InvariantCulture, out var kills))
                    return kills > 0;
            }
        }
        catch (IOException)
        {
        }
        return false;
    }

    /// <summary>
    /// SIGKILLs whatever is still in the session's cgroups (processes that left its process group) and removes them.
    /// A cgroup that still has processes after <see cref="RemoveTimeout"/> is left, logged, and removed at the next start.
    /// </summary>
    public async Task KillAndRemoveAsync(string sessionId, TimeProvider time, CancellationToken ct)
    {
        var dirs = Dirs(sessionId).ToList();
        var deadline = time.GetTimestamp() + (long)(RemoveTimeout.TotalSeconds * time.TimestampFrequency);
        while (true)
        {
            var left = dirs.Where(Directory.Exists).ToList();
            var pids = left.SelectMany(Pids).Distinct().ToList();
            foreach (var pid in pids) Posix.Signal(pid, Posix.SIGKILL);
            foreach (var dir in left)
            {
                try { Directory.Delete(dir); } // rmdir: a cgroup's files are not files, and it must be empty of processes
                catch (IOException) { }
            }
            if (!dirs.Any(Directory.Exists)) return;
            if (time.GetTimestamp() > deadline)
            {
                _logger.LogWarning("The cgroups of session {SessionId} still hold processes ({Pids}); left for the next start", sessionId, string.Join(", ", pids));
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, ct);
        }
    }

    /// <summary>Removes the cgroups of sessions this agent no longer runs (an agent that died mid-start), killing what is in them.</summary>
    public async Task RemoveStaleAsync(IReadOnlySet<string> live, TimeProvider time, CancellationToken ct)
    {
        var stale = Parents.SelectMany(Directory.EnumerateDirectories).Select(Path.GetFileName).OfType<string>()
            .Where(id => !live.Contains(id)).Distinct(StringComparer.Ordinal).ToList();
        foreach (var id in stale)
        {
            _logger.LogInformation("Removing the cgroups of session {SessionId}, which this agent no longer runs", id);
            await KillAndRemoveAsync(id, time, ct);
        }
    }

    private static IEnumerable<int> Pids(string dir)
    {
        try
        {
            return File.ReadAllLines(Path.Combine(dir, "cgroup.procs")).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToList();
        }
        catch (IOException)
        {
            return [];
        }
    }
}
