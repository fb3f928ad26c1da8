using System.Globalization;
using Microsoft.Extensions.Logging;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// A session's template resources enforced by the kernel through a cgroup per session: the memory limit (the kernel's
/// OOM killer acts inside the session), the cpu quota per 100 ms period (from the moment Xvnc answers, before the app
/// starts) and, where the host has the controller, a process limit (a fork bomb in one session cannot take the agent
/// host's process table). The session leader joins its cgroups before it starts anything (<see cref="JoinScript"/>), so
/// Xvnc, the app and everything they start are inside. Beyond the limits, a cgroup holds every process of the session
/// even when one leaves the process group (<c>setsid</c>), so a stop kills them all. Each agent keeps its sessions under
/// a parent of its own (<c>streamspace/agent-&lt;hash of its state folder&gt;</c>), so agents sharing a host never touch
/// each other's.
/// </summary>
/// <remarks>
/// Two layouts, chosen by <see cref="Detect"/>: cgroup v1 (a hierarchy per controller: <c>memory</c>, <c>cpu</c>,
/// <c>pids</c> folders under the root) and cgroup v2 (one unified hierarchy, the default of current distributions). A v2
/// hierarchy that does not offer the cpu and memory controllers still holds each session's processes, without limits.
/// </remarks>
internal abstract class SessionCgroups
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

    private readonly ILogger _logger;

    private SessionCgroups(IReadOnlyList<string> parents, bool limitsProcesses, bool limitsSwap, ILogger logger)
    {
        Parents = parents;
        LimitsProcesses = limitsProcesses;
        LimitsSwap = limitsSwap;
        _logger = logger;
    }

    /// <summary>Whether sessions get a process limit (the host has a pids controller for them).</summary>
    public bool LimitsProcesses { get; }

    /// <summary>
    /// Whether a session's swap counts against its memory limit: the kernel accounts swap (cgroup v1
    /// <c>memory.memsw.*</c>; cgroup v2 <c>memory.swap.max</c>). Without it a session held at its memory limit can still
    /// push pages out to the host's swap.
    /// </summary>
    public bool LimitsSwap { get; }

    /// <summary>What the limits are, in words for an operator (the hello's <c>sessionLimits</c>), when they are enforced.</summary>
    public string Describe(int maxProcesses)
    {
        var memory = LimitsSwap ? SwapLimitWords : "memory limit (swap not limited: the kernel does not account it)";
        var processes = LimitsProcesses ? $"at most {maxProcesses} processes" : "no pids controller, so no process limit";
        return $"enforced: a {Layout} per session (cpu quota, {memory}, {processes})";
    }

    /// <summary>"cgroup v1" or "cgroup v2".</summary>
    private protected abstract string Layout { get; }

    /// <summary>How the layout keeps a session's swap within its limit, in words.</summary>
    private protected abstract string SwapLimitWords { get; }

    /// <summary>The agent's parents, one per hierarchy the sessions are in; membership is read from the first.</summary>
    private IReadOnlyList<string> Parents { get; }

    /// <summary>The session's cgroup folder holding its <c>memory.*</c> files.</summary>
    public abstract string MemoryDir(string sessionId);

    /// <summary>The session's cgroup folder holding its <c>cpu.*</c> files.</summary>
    public abstract string CpuDir(string sessionId);

    /// <summary>The session's cgroup folder holding its <c>pids.*</c> files; null when sessions get no process limit.</summary>
    public abstract string? PidsDir(string sessionId);

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
            WriteLimits(sessionId, memoryBytes.ToString(CultureInfo.InvariantCulture), maxProcesses.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new SessionRuntimeException($"session {sessionId}: could not set up its cgroups ({ex.Message})", ex);
        }
        return [.. Dirs(sessionId).Select(dir => Path.Combine(dir, "cgroup.procs"))];
    }

    /// <summary>Writes the session's memory and process limits and lifts its cpu quota (<see cref="Prepare"/>).</summary>
    private protected abstract void WriteLimits(string sessionId, string memoryBytes, string maxProcesses);

    /// <summary>Sets the session's cpu quota: <paramref name="cpuMillicores"/> per <see cref="CfsPeriodMicros"/>, at least the kernel's smallest.</summary>
    public void LimitCpu(string sessionId, long cpuMillicores)
    {
        var quota = Math.Max(MinCfsQuotaMicros, cpuMillicores * CfsPeriodMicros / 1000);
        try
        {
            WriteCpuQuota(sessionId, quota.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new SessionRuntimeException($"session {sessionId}: could not set its cpu limit ({ex.Message})", ex);
        }
    }

    /// <summary>Writes a cpu quota in microseconds per <see cref="CfsPeriodMicros"/>.</summary>
    private protected abstract void WriteCpuQuota(string sessionId, string quotaMicros);

    /// <summary>The processes in the session's cgroup, including any that left its process group.</summary>
    public IReadOnlyList<int> Members(string sessionId) => [.. Pids(Path.Combine(Parents[0], sessionId))];

    /// <summary>True when the kernel's OOM killer acted inside the session's memory cgroup.</summary>
    public bool HitMemoryLimit(string sessionId)
    {
        var (file, prefix) = OomKillCounter;
        try
        {
            foreach (var line in File.ReadLines(Path.Combine(MemoryDir(sessionId), file)))
            {
                if (line.StartsWith(prefix, StringComparison.Ordinal) && long.TryParse(line.AsSpan(prefix.Length), CultureInfo.InvariantCulture, out var kills))
                    return kills > 0;
            }
        }
        catch (IOException)
        {
        }
        return false;
    }

    /// <summary>The file of the session's memory cgroup that counts OOM kills, and the prefix of that count's line.</summary>
    private protected abstract (string File, string Prefix) OomKillCounter { get; }

    /// <summary>SIGKILLs every process in one of the session's cgroup folders.</summary>
    private protected virtual void KillAll(string dir)
    {
        foreach (var pid in Pids(dir)) Posix.Signal(pid, Posix.SIGKILL);
    }

    /// <summary>
    /// The agent's cgroups under <paramref name="root"/> (normally <c>/sys/fs/cgroup</c>), or null when this host or
    /// process cannot make any. <paramref name="unavailable"/> says why the template's cpu and memory are not enforced,
    /// and is null when they are; a cgroup v2 hierarchy without the controllers gives cgroups that only hold processes.
    /// </summary>
    public static SessionCgroups? Detect(string root, string stateFolder, ILogger logger, out string? unavailable)
    {
        unavailable = null;
        if (!Environment.IsPrivilegedProcess)
        {
            unavailable = "the agent does not run as root";
            return null;
        }
        var agent = "agent-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(stateFolder))))[..12];
        if (File.Exists(Path.Combine(root, "memory", "memory.limit_in_bytes")) && File.Exists(Path.Combine(root, "cpu", "cpu.cfs_quota_us")))
            return V1.Create(root, agent, logger, out unavailable);
        if (File.Exists(Path.Combine(root, "cgroup.controllers")))
            return V2.Create(root, agent, logger, out unavailable);
        unavailable = $"no cgroup v1 memory and cpu hierarchies and no cgroup v2 hierarchy under {root}";
        return null;
    }

    private IEnumerable<string> Dirs(string sessionId) => Parents.Select(parent => Path.Combine(parent, sessionId));

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
            foreach (var dir in left) KillAll(dir);
            foreach (var dir in left)
            {
                try { Directory.Delete(dir); } // rmdir: a cgroup's files are not files, and it must be empty of processes
                catch (IOException) { }
            }
            if (!dirs.Any(Directory.Exists)) return;
            if (time.GetTimestamp() > deadline)
            {
                _logger.LogWarning("The cgroups of session {SessionId} still hold processes ({Pids}); left for the next start",
                    sessionId, string.Join(", ", dirs.SelectMany(Pids).Distinct()));
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

    private static void Write(string dir, string file, string value) => File.WriteAllText(Path.Combine(dir, file), value);

    /// <summary>
    /// cgroup v1: a cgroup per session in the <c>memory</c> and <c>cpu</c> hierarchies (<c>memory.limit_in_bytes</c>, and
    /// <c>memory.memsw.limit_in_bytes</c> at the same value where the kernel accounts swap; <c>cpu.cfs_quota_us</c>), and
    /// in <c>pids</c> when the host has it (<c>pids.max</c>).
    /// </summary>
    private sealed class V1 : SessionCgroups
    {
        private readonly string _memory;
        private readonly string _cpu;
        /// <summary>The pids hierarchy's parent, when the host has one.</summary>
        private readonly string? _pids;

        private V1(string memoryParent, string cpuParent, string? pidsParent, bool limitsSwap, ILogger logger)
            : base(pidsParent is null ? [memoryParent, cpuParent] : [memoryParent, cpuParent, pidsParent], pidsParent is not null, limitsSwap, logger)
        {
            _memory = memoryParent;
            _cpu = cpuParent;
            _pids = pidsParent;
        }

        public static V1? Create(string root, string agent, ILogger logger, out string? unavailable)
        {
            unavailable = null;
            var memory = Path.Combine(root, "memory");
            var pids = Path.Combine(root, "pids");
            var cgroups = new V1(Path.Combine(memory, "streamspace", agent), Path.Combine(root, "cpu", "streamspace", agent),
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

        private protected override string Layout => "cgroup v1";

        private protected override string SwapLimitWords => "memory limit including swap";

        public override string MemoryDir(string sessionId) => Path.Combine(_memory, sessionId);

        public override string CpuDir(string sessionId) => Path.Combine(_cpu, sessionId);

        public override string? PidsDir(string sessionId) => _pids is null ? null : Path.Combine(_pids, sessionId);

        private protected override void WriteLimits(string sessionId, string memoryBytes, string maxProcesses)
        {
            var memory = MemoryDir(sessionId);
            if (LimitsSwap)
            {
                // The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every write: lift the swap
                // limit first, so a re-limit to more memory than before is not refused, then set both to the same value.
                Write(memory, "memory.memsw.limit_in_bytes", "-1");
                Write(memory, "memory.limit_in_bytes", memoryBytes);
                Write(memory, "memory.memsw.limit_in_bytes", memoryBytes);
            }
            else
            {
                Write(memory, "memory.limit_in_bytes", memoryBytes);
            }
            var cpu = CpuDir(sessionId);
            Write(cpu, "cpu.cfs_period_us", CfsPeriodMicros.ToString(CultureInfo.InvariantCulture));
            Write(cpu, "cpu.cfs_quota_us", "-1");
            if (PidsDir(sessionId) is { } pids) Write(pids, "pids.max", maxProcesses);
        }

        private protected override void WriteCpuQuota(string sessionId, string quotaMicros) => Write(CpuDir(sessionId), "cpu.cfs_quota_us", quotaMicros);

        private protected override (string File, string Prefix) OomKillCounter => ("memory.oom_control", "oom_kill ");
    }

    /// <summary>
    /// cgroup v2: one cgroup per session in the unified hierarchy, its controllers handed down from the root
    /// (<c>cgroup.subtree_control</c> of the root, <c>streamspace</c> and the agent's parent): <c>memory.max</c>,
    /// <c>memory.swap.max</c> 0 where the kernel accounts swap (a session at its limit cannot spill into the host's swap),
    /// <c>cpu.max</c> and <c>pids.max</c> when the pids controller is offered. A stop kills the whole cgroup at once
    /// (<c>cgroup.kill</c>, Linux 5.14) where the kernel has it. Without the cpu and memory controllers (a hybrid host whose
    /// controllers are bound to v1 hierarchies, or a container that was not handed any), sessions still get a cgroup
    /// each that holds their processes, and no limits (<see cref="Limited"/> false).
    /// </summary>
    private sealed class V2 : SessionCgroups
    {
        private readonly string _parent;

        private V2(string parent, bool limited, bool pids, bool limitsSwap, ILogger logger)
            : base([parent], limited && pids, limited && limitsSwap, logger)
        {
            _parent = parent;
            Limited = limited;
        }

        /// <summary>Whether the session cgroups have the cpu and memory controllers (false: they only hold processes).</summary>
        private bool Limited { get; }

        public static V2? Create(string root, string agent, ILogger logger, out string? unavailable)
        {
            unavailable = null;
            string[] offered;
            try
            {
                offered = File.ReadAllText(Path.Combine(root, "cgroup.controllers")).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                unavailable = $"cannot read the controllers of the cgroup v2 hierarchy at {root} ({ex.Message})";
                return null;
            }
            var streamspace = Path.Combine(root, "streamspace");
            var parent = Path.Combine(streamspace, agent);
            try
            {
                Directory.CreateDirectory(parent);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                unavailable = $"cannot create cgroups under {root} ({ex.Message})";
                return null;
            }
            const string containedOnly = "; each session still gets a cgroup of its own, so a stop reaches every process it started";
            string[] missing = [.. new[] { "cpu", "memory" }.Where(c => !offered.Contains(c))];
            if (missing.Length > 0)
            {
                unavailable = $"the cgroup v2 hierarchy at {root} does not offer the {string.Join(" and ", missing)} controller{(missing.Length > 1 ? "s" : "")} " +
                    $"(its cgroup.controllers: \"{string.Join(' ', offered)}\"){containedOnly}";
                return new V2(parent, limited: false, pids: false, limitsSwap: false, logger);
            }
            var pids = offered.Contains("pids");
            var wanted = pids ? "+cpu +memory +pids" : "+cpu +memory";
            foreach (var level in new[] { root, streamspace, parent })
            {
                try
                {
                    Write(level, "cgroup.subtree_control", wanted);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // The usual cause: a non-root cgroup that holds processes (a container's own cgroup) cannot hand controllers down.
                    unavailable = $"cannot hand the cpu and memory controllers down from {level} ({ex.Message}); a cgroup that holds processes " +
                        $"cannot, so give the agent a cgroup tree of its own{containedOnly}";
                    return new V2(parent, limited: false, pids: false, limitsSwap: false, logger);
                }
            }
            return new V2(parent, limited: true, pids, File.Exists(Path.Combine(parent, "memory.swap.max")), logger);
        }

        private protected override string Layout => "cgroup v2";

        private protected override string SwapLimitWords => "memory limit with no swap";

        public override string MemoryDir(string sessionId) => Path.Combine(_parent, sessionId);

        public override string CpuDir(string sessionId) => Path.Combine(_parent, sessionId);

        public override string? PidsDir(string sessionId) => LimitsProcesses ? Path.Combine(_parent, sessionId) : null;

        private protected override void WriteLimits(string sessionId, string memoryBytes, string maxProcesses)
        {
            if (!Limited) return;
            var dir = Path.Combine(_parent, sessionId);
            Write(dir, "memory.max", memoryBytes);
            if (LimitsSwap) Write(dir, "memory.swap.max", "0");
            Write(dir, "cpu.max", $"max {CfsPeriodMicros}");
            if (LimitsProcesses) Write(dir, "pids.max", maxProcesses);
        }

        private protected override void WriteCpuQuota(string sessionId, string quotaMicros)
        {
            if (Limited) Write(Path.Combine(_parent, sessionId), "cpu.max", $"{quotaMicros} {CfsPeriodMicros}");
        }

        private protected override (string File, string Prefix) OomKillCounter => ("memory.events", "oom_kill ");

        private protected override void KillAll(string dir)
        {
            // One write kills the cgroup and everything below it, without racing a process that forks meanwhile.
            var kill = Path.Combine(dir, "cgroup.kill");
            if (File.Exists(kill))
            {
                try
                {
                    File.WriteAllText(kill, "1");
                    return;
                }
                catch (IOException)
                {
                    // Fall back to signalling each process.
                }
            }
            base.KillAll(dir);
        }
    }
}
