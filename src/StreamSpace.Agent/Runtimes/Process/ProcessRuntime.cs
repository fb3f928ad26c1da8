using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// Runs each session as one TigerVNC Xvnc plus the template's command in a process group of its own (design §7).
/// The VNC endpoint is a unix socket in the session folder (mode 0600, folder 0700), reachable only by the
/// session user and the agent. Sessions outlive the agent and are re-adopted from their records.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class ProcessRuntime : ISessionRuntime
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);
    /// <summary>
    /// How often a start looks for Xvnc's pid, Xvnc's answer and the app's pid: a start waits for each in turn, and at
    /// <see cref="PollInterval"/> those waits added ~25 ms each on average to a launch (bench/run.sh launch).
    /// </summary>
    private static readonly TimeSpan StartPollInterval = TimeSpan.FromMilliseconds(5);
    /// <summary>How long a hibernate waits for every process of the session to be stopped (see <see cref="WaitUntilStoppedAsync"/>).</summary>
    private static readonly TimeSpan StopConfirmTimeout = TimeSpan.FromSeconds(30);
    private const string X11SocketDir = "/tmp/.X11-unix";
    private const UnixFileMode PrivateDir = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    /// <summary>rwx--x--x: others may pass through to what they own below, but not list or change anything.</summary>
    private const UnixFileMode TraverseOnly = PrivateDir | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
    /// <summary>Displays tried per start before giving up; another X server may grab a free number between check and bind.</summary>
    private const int DisplayAttempts = 5;
    /// <summary>How often a running agent removes the folders of sessions that ended more than a day ago (as the command records: hourly).</summary>
    private static readonly TimeSpan SessionFolderPruneInterval = TimeSpan.FromHours(1);

    private readonly AgentOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly string _sessionsDir;
    private readonly string _homesDir;
    /// <summary>
    /// One empty file per deleted user whose home a session still used when its <c>home.delete</c> came: the home goes
    /// when the last such session ends (<see cref="Forget"/>), or at the next start when the agent was away meanwhile.
    /// </summary>
    private readonly string _homeDeletesDir;
    /// <summary>
    /// One empty file per deleted user whose <c>home.delete</c> came here, named by their user id (never given to anybody
    /// else): no session of theirs starts here after it, so no start can make their home again once it is gone.
    /// </summary>
    private readonly string _deletedUsersDir;
    /// <summary>Held while a home's users are checked and its deletion is done or deferred, so neither a deletion nor a deferral is missed.</summary>
    private readonly Lock _homeDeletes = new();
    /// <summary>The persistent homes of starts under way, by session id (<see cref="BeginStart"/>); under <see cref="_homeDeletes"/>.</summary>
    private readonly Dictionary<string, string> _startingHomes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ProcessSession> _sessions = new();
    private readonly Channel<SessionStatusPayload> _observations = Channel.CreateUnbounded<SessionStatusPayload>();
    private readonly HashSet<int> _reservedDisplays = [];
    private readonly CancellationTokenSource _stopping = new();
    private SessionUser? _user;
    /// <summary>Per-session cgroups enforcing template resources; null when the host cannot (said at start).</summary>
    private SessionCgroups? _cgroups;
    private readonly ConcurrentDictionary<string, SessionUser> _owners = new(StringComparer.Ordinal);
    private Task? _monitor;
    /// <summary>Folders <see cref="PruneEndedSessionFolders"/> could not remove and has said so about (it says so once per folder).</summary>
    private readonly HashSet<string> _unprunable = new(StringComparer.Ordinal);
    private int _disposed;

    public ProcessRuntime(AgentOptions options, ILogger logger, TimeProvider time)
    {
        _options = options;
        _logger = logger;
        _time = time;
        _sessionsDir = Path.Combine(Path.GetFullPath(options.StateFolder), "sessions");
        _homesDir = Path.Combine(Path.GetFullPath(options.StateFolder), "homes");
        _homeDeletesDir = Path.Combine(Path.GetFullPath(options.StateFolder), "home-deletes");
        _deletedUsersDir = Path.Combine(Path.GetFullPath(options.StateFolder), "deleted-users");
    }

    public string Platform => Platforms.Process;

    public ChannelReader<SessionStatusPayload> Observations => _observations.Reader;

    public string? SessionLimits { get; private set; }

    /// <summary>The window manager's command line sessions start with, or "" for none (see <see cref="AgentOptions.SessionWindowManager"/>).</summary>
    internal string WindowManager { get; private set; } = "";

    public async Task InitializeAsync(CancellationToken ct)
    {
        try
        {
            _user = SessionUser.Resolve(_options.SessionUser);
        }
        catch (Exception ex) when (ex is SessionRuntimeException or System.ComponentModel.Win32Exception or IOException or UnauthorizedAccessException)
        {
            // A setting the agent cannot start with, said in one line like the others: not an unhandled exception that
            // aborts the process (and the control plane an embedded agent runs in).
            throw new AgentOptionsException(
                $"invalid agent configuration: the session user '{_options.SessionUser}' cannot be used ({ex.Message.ReplaceLineEndings(" ")}); STREAMSPACE_SESSION_USER sets it", ex);
        }
        WindowManager = _options.SessionWindowManager switch
        {
            null => IsInstalled(ProgramOf(AgentOptions.DefaultWindowManager)!) ? AgentOptions.DefaultWindowManager : "",
            var none when none.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) => "",
            var given => given.Trim(),
        };
        if (WindowManager.Length > 0 && ProgramOf(WindowManager) is { } wm && !IsInstalled(wm))
        {
            _logger.LogWarning("STREAMSPACE_SESSION_WINDOW_MANAGER names '{Program}', which is not installed here: sessions start without a window manager", wm);
            WindowManager = "";
        }
        else if (WindowManager.Length == 0)
            _logger.LogInformation("Sessions start without a window manager{Why}: each app keeps the window size it chooses, however large the viewer",
                _options.SessionWindowManager is null ? " (matchbox-window-manager is not installed; with it, apps fill the session's desktop)" : "");
        if (IsolationWarning(_user) is { } warning) _logger.LogWarning("{Warning}", warning);
        PrepareFolders();
        foreach (var dir in Directory.EnumerateDirectories(_sessionsDir))
        {
            if (ProcessSessionRecord.Load(dir) is { } record && record.SessionId == Path.GetFileName(dir))
            {
                try
                {
                    ProcessSessionRecord.MakePrivate(dir);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // Another account's record (a state folder a root agent used before): re-adopted all the same.
                    _logger.LogWarning("The record of session {SessionId} could not be made private (mode 0600): {Error}", record.SessionId, ex.Message);
                }
                _sessions[record.SessionId] = new ProcessSession(record, dir);
                LaunchRecord.Delete(dir); // the agent ended between saving the record and removing this
            }
            else
            {
                // A folder without a record is a session that ended, or a start the agent died in: that one's socket folder
                // (an ended session's went with it) serves nothing now, nor do the processes of a start it died in after
                // letting the app start.
                if (LaunchRecord.Load(dir) is { } launch) await KillCutShortStartAsync(dir, launch, ct);
                RemoveSocketDirOf(dir);
            }
        }
        PruneEndedSessionFolders();
        if (_options.SessionLimits)
        {
            // Without limits there may still be cgroups: a cgroup v2 hierarchy without the cpu and memory controllers
            // still holds each session's processes.
            _cgroups = SessionCgroups.Detect(_options.CgroupRoot, _options.StateFolder, _logger, out var unavailable);
            if (unavailable is not null)
                _logger.LogWarning("Session cpu and memory limits are not enforced on this agent: {Reason}", unavailable);
            var limits = unavailable is null && _cgroups is not null ? _cgroups.Describe(_options.SessionMaxProcesses) : $"not enforced: {unavailable}";
            SessionLimits = limits.Length <= HelloPayload.MaxSessionLimitsLength ? limits : limits[..HelloPayload.MaxSessionLimitsLength];
        }
        else
        {
            SessionLimits = "not enforced: turned off (STREAMSPACE_SESSION_LIMITS=false)";
        }
        // Judge the adopted sessions before the first hello, so the inventory never lists a dead one.
        await CheckSessionsAsync(ct);
        if (_cgroups is not null) await _cgroups.RemoveStaleAsync(_sessions.Keys.ToHashSet(StringComparer.Ordinal), _time, ct);
        CompleteDeferredHomeDeletes();
        foreach (var session in _sessions.Values)
        {
            _logger.LogInformation("Re-adopted session {SessionId} on display :{Display} (pgid {Pgid}, {State})",
                session.Record.SessionId, session.Record.Display, session.Record.Pgid, session.Record.State);
            // Only a hibernate stops Xvnc. A running session whose Xvnc is stopped met the end of an agent between
            // its SIGSTOP and the record saying "hibernated": the hibernate did not happen, so neither does the stop.
            if (session.Record.State == ObservedStates.Running && ProcFs.Stat(session.Record.Xvnc.Pid) is { State: 'T' })
            {
                _logger.LogWarning("Session {SessionId} was left stopped by a hibernate the agent did not finish; continued", session.Record.SessionId);
                SignalSession(session.Record, Posix.SIGCONT);
            }
        }
        _monitor = MonitorAsync(_stopping.Token);
    }

    /// <summary>
    /// Kills what a start the agent ended in had launched (<see cref="LaunchRecord"/>): its leader, Xvnc and app ran on
    /// with no record, so nothing would ever stop them, and they held a display number. Never throws for the processes:
    /// a group no longer ours (<see cref="KillGroupAsync"/>) is left alone.
    /// </summary>
    private async Task KillCutShortStartAsync(string dir, LaunchRecord launch, CancellationToken ct)
    {
        if (launch.Leader.IsAlive || launch.Xvnc.IsAlive)
        {
            _logger.LogWarning("The start of session {SessionId} was cut short by the agent's end after its app was let start; its processes (pgid {Pgid}) are stopped",
                Path.GetFileName(dir), launch.Pgid);
            await KillGroupAsync(launch.Pgid, [launch.Leader, launch.Xvnc], ct);
        }
        CleanupX11(launch.Display);
        if (!LaunchRecord.Delete(dir)) _logger.LogWarning("{File} in {Folder} could not be removed", LaunchRecord.FileName, dir);
    }

    /// <summary>
    /// The program a shell command line starts, when it is a plain word (not a shell construct); after <c>exec</c>, the
    /// word that follows it. Other shell builtins and keywords (<c>cd</c>, <c>if</c>, ...) start no program of their own.
    /// Null means "not known before the shell runs it": the start goes ahead and a program the shell cannot find ends it
    /// with the shell's own words ("the app exited right after it started: ... not found"). Words end at any whitespace
    /// (a YAML <c>command: |</c> block ends in a newline); a first word the shell would still rewrite (quotes, <c>~</c>,
    /// <c>\</c>, <c>$</c>) or a <c>#</c> comment line is not looked up, so a valid command is never refused.
    /// </summary>
    internal static string? ProgramOf(string command)
    {
        var line = command.TrimStart();
        var end = 0;
        while (end < line.Length && !char.IsWhiteSpace(line[end])) end++;
        var first = line[..end];
        if (first == "exec") return end < line.Length ? ProgramOf(line[end..]) : null;
        if (ShellWords.Contains(first)) return null;
        return first.Length == 0 || first[0] == '#' || first.Contains('=', StringComparison.Ordinal) || first.AsSpan().IndexOfAny(ShellSyntax) >= 0 ? null : first;
    }

    /// <summary>Characters of a word the shell expands, unquotes or treats as syntax: such a word is not a program's name as written.</summary>
    private static readonly System.Buffers.SearchValues<char> ShellSyntax = System.Buffers.SearchValues.Create("$(`;&|<>{\"'~\\");

    private static readonly HashSet<string> ShellWords = new(StringComparer.Ordinal)
    {
        ".", ":", "[", "!", "cd", "command", "eval", "export", "if", "for", "while", "until", "case", "set", "trap", "ulimit", "umask", "unset", "wait",
    };

    private static bool IsInstalled(string program) =>
        program.Contains('/', StringComparison.Ordinal)
            ? File.Exists(program)
            : SessionPath.Split(':').Any(dir => File.Exists(Path.Combine(dir, program)));

    /// <summary>The PATH a session's shell gets (its environment is clean, nothing inherited from the agent).</summary>
    private const string SessionPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games";

    public IReadOnlyList<SessionInventoryItem> Inventory() =>
        [.. _sessions.Values.Select(s => new SessionInventoryItem { SessionId = s.Record.SessionId, State = s.Record.State })
            .OrderBy(s => s.SessionId, StringComparer.Ordinal)];

    public async Task StartAsync(SessionStartArgs args, CancellationToken ct)
    {
        ValidateName(args.SessionId, "session id");
        ValidateName(args.User, "user");
        if (args.UserId is not null) ValidateName(args.UserId, "user id");
        if (string.IsNullOrWhiteSpace(args.Launch.ProcessCommand))
        {
            throw new SessionRuntimeException($"template '{args.Template}' has no process command");
        }
        if (_sessions.ContainsKey(args.SessionId))
        {
            return; // idempotent: it already runs
        }
        // Say plainly what stops every session here, instead of the Xvnc exit "(no log)" that would follow.
        if (UnreachableStateFolder() is { } unreachable) throw new SessionRuntimeException(unreachable);
        // Say plainly when the app is not installed here, instead of the Xvnc exit that would follow.
        if (ProgramOf(args.Launch.ProcessCommand) is { } program && !IsInstalled(program))
        {
            throw new SessionRuntimeException($"'{program}' (template '{args.Template}') is not installed on this agent");
        }
        var begun = _time.GetTimestamp();
        var limits = Resources(args);
        var ownerKey = OwnerKey(args);
        var user = UserFor(ownerKey, args.User);
        var startingHome = BeginStart(args, ownerKey);
        try
        {
            await StartCoreAsync(args, begun, limits, ownerKey, user, ct);
        }
        finally
        {
            EndStart(args.SessionId, startingHome);
        }
    }

    /// <summary>
    /// Refuses the start of a deleted user's session (their <c>home.delete</c> came here) and, for a persistent home, counts
    /// the start among the home's users until it ends (<see cref="EndStart"/>): a session joins <see cref="_sessions"/> only
    /// once it runs, and a <c>home.delete</c> that came meanwhile must wait for it instead of pulling the home from under it
    /// or missing the home the start made. Returns the persistent home, or null.
    /// </summary>
    private string? BeginStart(SessionStartArgs args, string ownerKey)
    {
        var home = args.PersistentHome ? Path.Combine(_homesDir, ownerKey) : null;
        lock (_homeDeletes)
        {
            if (args.UserId is not null && File.Exists(DeletedUser(args.UserId)))
                throw new SessionRuntimeException(
                    $"user {args.User} (id {args.UserId}) was deleted: the control plane sent this agent the deletion of their home, so no session of theirs starts here");
            if (home is not null) _startingHomes[args.SessionId] = home;
        }
        return home;
    }

    /// <summary>Ends what <see cref="BeginStart"/> began: a deletion deferred for the start is done now if nothing else uses the home.</summary>
    private void EndStart(string sessionId, string? home)
    {
        if (home is null) return;
        lock (_homeDeletes) _startingHomes.Remove(sessionId);
        if (HomeOwnerId(home) is { } owner) CompleteDeferredHomeDelete(owner);
    }

    private async Task StartCoreAsync(SessionStartArgs args, long begun, (long Cpu, long Memory) limits, string ownerKey, SessionUser user, CancellationToken ct)
    {
        // <id>/ belongs to the agent (the record lives here, out of the session user's reach, so the user can never
        // plant a symlink the agent would write through); <id>/run/ belongs to the session user: its socket,
        // pid files and log.
        var dir = Path.Combine(_sessionsDir, args.SessionId);
        RemoveTree(dir); // leftovers of an ended session
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, user.SwitchUser ? TraverseOnly : PrivateDir);
        var runDir = ProcessSession.RunDirOf(dir);
        Directory.CreateDirectory(runDir);
        File.SetUnixFileMode(runDir, PrivateDir);
        user.Own(runDir);

        // What this start has taken so far: on any failure it is given back (AbandonStartAsync), so nothing of a start
        // that was answered failed runs on untracked or stays behind.
        string? socketPath = null;
        string? temporaryHome = null;
        (ProcessSessionRecord Record, System.Diagnostics.Process Leader)? launched = null;
        try
        {
            socketPath = PrepareSocketDir(dir, user);
            var (home, temporary) = PrepareHome(args, ownerKey, dir, user);
            if (temporary) temporaryHome = home;
            // The cgroup.procs files the leader joins before it starts anything: the session's limits, from its first process on.
            var cgroups = _cgroups?.Prepare(args.SessionId, limits.Memory, _options.SessionMaxProcesses) ?? [];
            SessionStartFailure? lastFailure = null;
            var taken = new HashSet<int>();
            for (var attempt = 0; attempt < DisplayAttempts; attempt++)
            {
                var display = ReserveDisplay(taken);
                try
                {
                    var phases = new StartPhases { Begun = begun };
                    launched = await LaunchAsync(args, runDir, socketPath, display, home, temporary, user, cgroups, limits.Cpu, phases, ct);
                    var (record, leader) = launched.Value;
                    record.Save(dir);
                    LaunchRecord.Delete(dir);
                    _sessions[args.SessionId] = new ProcessSession(record, dir) { Leader = leader };
                    _logger.LogInformation(
                        "Session {SessionId} running on display :{Display} as {User} (pgid {Pgid}) after {StartMs} ms: prepared in {PrepareMs} ms, " +
                        "Xvnc answered {XvncMs} ms later, the app started {AppMs} ms after that",
                        args.SessionId, display, user.Name, record.Pgid, Ms(phases.Begun, _time.GetTimestamp()), Ms(phases.Begun, phases.Launched),
                        Ms(phases.Launched, phases.XvncReady), Ms(phases.XvncReady, phases.AppStarted));
                    _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = args.SessionId, State = ObservedStates.Running });
                    return;
                }
                catch (SessionStartFailure failure)
                {
                    lastFailure = failure;
                    _logger.LogWarning("Session {SessionId} failed to start on display :{Display}: {Reason}", args.SessionId, display, failure.Message);
                    // A display another X server won is that server's: leave its lock and socket alone.
                    if (failure.DisplayInUse)
                    {
                        taken.Add(display);
                        continue;
                    }
                    CleanupX11(display);
                    break;
                }
                finally
                {
                    lock (_reservedDisplays) _reservedDisplays.Remove(display);
                }
            }
            throw new SessionRuntimeException(lastFailure?.Message ?? "session failed to start");
        }
        catch (Exception ex)
        {
            if (ex is not SessionRuntimeException)
                _logger.LogWarning("Session {SessionId} failed to start: {Error}; what it started and took is removed", args.SessionId, ex.Message);
            // Asked before the session's cgroups go: a start the memory limit killed (Xvnc or the app) fails for that, not
            // for what died of it ("Xvnc exited during start" would send the operator after Xvnc).
            var outOfMemory = ex is SessionRuntimeException && _cgroups?.HitMemoryLimit(args.SessionId) == true;
            await AbandonStartAsync(args.SessionId, dir, socketPath, temporaryHome, launched);
            if (outOfMemory)
                throw new SessionRuntimeException(
                    $"out of memory during start: the session reached its template's memory limit ({args.Resources.Memory}); {ex.Message}", ex);
            throw;
        }
    }

    /// <summary>
    /// Gives back what a failed start took: the processes it launched (when the failure came after the launch, e.g. its
    /// record could not be written), the session's cgroups, its temporary home and its socket folder. The session's
    /// folder stays without a record: its log says why the start failed, and it is pruned like that of an ended session.
    /// </summary>
    private async Task AbandonStartAsync(string sessionId, string dir, string? socketPath, string? temporaryHome,
        (ProcessSessionRecord Record, System.Diagnostics.Process Leader)? launched)
    {
        if (launched is { } started)
        {
            var (record, leader) = started;
            await KillGroupAsync(record.Pgid, record.Processes, CancellationToken.None);
            leader.Dispose();
            CleanupX11(record.Display);
            foreach (var file in new[] { ProcessSessionRecord.FileName, ProcessSessionRecord.FileName + ".tmp" })
            {
                try { File.Delete(Path.Combine(dir, file)); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { _logger.LogWarning("{Error}", ex.Message); }
            }
        }
        if (_cgroups is not null) await _cgroups.KillAndRemoveAsync(sessionId, _time, CancellationToken.None);
        LaunchRecord.Delete(dir); // what it names was killed with the attempt (LaunchAsync) or just above
        if (temporaryHome is not null) TryDelete(temporaryHome);
        if (socketPath is not null && Path.GetDirectoryName(socketPath) is { } socketDir) TryDelete(socketDir);
    }

    /// <summary>When a start reached each of its steps (<see cref="TimeProvider.GetTimestamp"/>), for the log line that says where its time went.</summary>
    private sealed class StartPhases
    {
        public long Begun;
        public long Launched;
        public long XvncReady;
        public long AppStarted;
    }

    private long Ms(long from, long to) => (long)_time.GetElapsedTime(from, to).TotalMilliseconds;

    private async Task<(ProcessSessionRecord Record, System.Diagnostics.Process Leader)> LaunchAsync(SessionStartArgs args, string runDir, string socketPath, int display, string home, bool temporary, SessionUser user, IReadOnlyList<string> cgroups, long cpuMillicores, StartPhases phases, CancellationToken ct)
    {
        File.Delete(socketPath);
        foreach (var stale in new[] { SessionLauncher.XvncPidFile, SessionLauncher.AppPidFile, SessionLauncher.AppExitFile, SessionLauncher.LaunchFile, SessionLauncher.SocketFile })
        {
            File.Delete(Path.Combine(runDir, stale));
        }
        // X access control on, with a cookie of this session's own (a new one for each display tried).
        var xauthority = Path.Combine(runDir, XAuthority.FileName);
        XAuthority.Write(xauthority, display, user);
        // The template's environment reaches the session's own programs only: set by env after setpriv, never in the
        // steps that still run as root (the cgroup join shell, setsid, setpriv), where LD_PRELOAD or the like would run an
        // admin's choice of code as root on the agent's host. Never headless: the app must draw into the session's display.
        var templateEnv = args.Launch.Env.Where(e => e.Key is not ("MOZ_HEADLESS" or "DISPLAY" or "XAUTHORITY")).Select(e => $"{e.Key}={e.Value}").ToArray();
        string[] withEnv = templateEnv.Length > 0 ? ["/usr/bin/env", "--", .. templateEnv] : [];
        string[] command = ["/usr/bin/setsid", .. user.SwitchArguments(), .. withEnv, "/bin/sh", "-c", SessionLauncher.Script, "streamspace-session", runDir,
            display.ToString(CultureInfo.InvariantCulture), _options.XvncPath, _options.Geometry, args.Launch.ProcessCommand!, LaunchPolls(), socketPath,
            WindowManager];
        // With limits, the leader enters the session's cgroups first (as root, before anything of the session runs).
        if (cgroups.Count > 0)
            command = ["/bin/sh", "-c", SessionCgroups.JoinScript, "streamspace-join", .. cgroups, "--", .. command];
        var start = new System.Diagnostics.ProcessStartInfo(command[0]) { UseShellExecute = false };
        foreach (var arg in command.Skip(1)) start.ArgumentList.Add(arg);
        // A clean environment: nothing of the agent's (its token above all) leaks into a session.
        start.Environment.Clear();
        start.Environment["PATH"] = SessionPath;
        start.Environment["HOME"] = home;
        start.Environment["USER"] = user.Name;
        start.Environment["LOGNAME"] = user.Name;
        start.Environment["SHELL"] = File.Exists("/bin/bash") ? "/bin/bash" : "/bin/sh";
        start.Environment["LANG"] = "C.UTF-8";
        start.Environment["DISPLAY"] = $":{display}";
        start.Environment["XAUTHORITY"] = xauthority;
        start.Environment["STREAMSPACE_SESSION_ID"] = args.SessionId;
        start.WorkingDirectory = home;

        var deadline = _time.GetTimestamp() + (long)(_options.SessionStartTimeout.TotalSeconds * _time.TimestampFrequency);
        phases.Launched = _time.GetTimestamp();
        // Kept (not disposed) while the session lives: the agent is the leader's parent and must reap it.
        var leader = System.Diagnostics.Process.Start(start) ?? throw new SessionStartFailure("could not start the session leader", false);
        var pgid = leader.Id;
        // setsid runs right after the fork: until then the child is still in the agent's process group.
        while (ProcFs.Stat(pgid) is { } early && early.Pgid != pgid && !leader.HasExited && _time.GetTimestamp() < deadline)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(5), _time, ct);
        }
        if (ProcFs.Stat(pgid) is not { } stat || stat.Pgid != pgid)
        {
            var joinFailed = leader.HasExited && leader.ExitCode == SessionCgroups.JoinFailedExitCode;
            if (!leader.HasExited) leader.Kill();
            leader.Dispose();
            throw new SessionStartFailure(joinFailed ? "the session leader could not enter the session's cgroups" : "the session leader did not get a process group of its own", false);
        }
        var leaderProcess = new RecordedProcess(pgid, stat.StartTime);
        RecordedProcess? xvnc = null;
        try
        {
            xvnc = await WaitForPidAsync(runDir, SessionLauncher.XvncPidFile, pgid, leaderProcess, null, deadline, ct);
            await WaitForRfbAsync(runDir, socketPath, pgid, leaderProcess, xvnc, deadline, ct);
            phases.XvncReady = _time.GetTimestamp();
            // Xvnc started unthrottled (see SessionCgroups.Prepare); the app starts under the template's cpu.
            _cgroups?.LimitCpu(args.SessionId, cpuMillicores);
            // From the launch file on, the app may start: what runs is recorded first, so an agent that ends before the session's
            // record is saved stops it at its next start instead of leaving it running unseen.
            new LaunchRecord(pgid, display, leaderProcess, xvnc).Save(Path.GetDirectoryName(runDir)!);
            // CreateNew = O_EXCL: never follows a symlink the session user may have put there.
            new FileStream(Path.Combine(runDir, SessionLauncher.LaunchFile), FileMode.CreateNew, FileAccess.Write).Dispose();
            // Wakes the leader from its wait for the launch file (the leader only: Xvnc must not get the signal).
            if (leaderProcess.IsAlive) Posix.Signal(leaderProcess.Pid, SessionLauncher.LaunchSignal);
            var app = await WaitForPidAsync(runDir, SessionLauncher.AppPidFile, pgid, leaderProcess, xvnc, deadline, ct);
            phases.AppStarted = _time.GetTimestamp();
            return (new ProcessSessionRecord
            {
                SessionId = args.SessionId,
                User = args.User,
                Template = args.Template,
                Display = display,
                SocketPath = socketPath,
                HomePath = home,
                TemporaryHome = temporary,
                Pgid = pgid,
                Leader = leaderProcess,
                Xvnc = xvnc,
                App = app,
                State = ObservedStates.Running,
                StartedAt = _time.GetUtcNow(),
            }, leader);
        }
        catch
        {
            // Whatever went wrong, leave nothing of this attempt running: the leader may be gone (its app
            // exited) while Xvnc still runs in the group, so Xvnc counts as a witness that pgid is ours.
            await KillGroupAsync(pgid, xvnc is null ? [leaderProcess] : [leaderProcess, xvnc], CancellationToken.None);
            leader.Dispose();
            throw;
        }
    }

    /// <summary>The leader waits for the launch file a bit longer than the agent waits for readiness, then gives up.</summary>
    private string LaunchPolls() =>
        ((int)Math.Ceiling(_options.SessionStartTimeout.TotalSeconds * 2 / SessionLauncher.LaunchPollSeconds)).ToString(CultureInfo.InvariantCulture);

    private async Task<RecordedProcess> WaitForPidAsync(string dir, string file, int pgid, RecordedProcess leader, RecordedProcess? xvnc, long deadline, CancellationToken ct)
    {
        var path = Path.Combine(dir, file);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            // The leader writes each pid (with its newline, in one write) after starting the process.
            if (UntrustedFile.ReadHead(path, 64) is { } text && text.EndsWith('\n') && int.TryParse(text.AsSpan().Trim(), out var pid))
            {
                if (ProcFs.Stat(pid) is { } stat && stat.Pgid == pgid) return new RecordedProcess(pid, stat.StartTime);
                // Gone already (and reaped by the leader): it exited at once. Said so now, not after the start timeout. No
                // Xvnc yet means this is Xvnc's pid.
                throw xvnc is null ? XvncExited(dir) : AppExited(dir);
            }
            ThrowIfDead(dir, leader, xvnc);
            if (_time.GetTimestamp() > deadline) throw new SessionStartFailure($"timed out waiting for {file}", false);
            await Task.Delay(StartPollInterval, _time, ct);
        }
    }

    private async Task WaitForRfbAsync(string dir, string socketPath, int pgid, RecordedProcess leader, RecordedProcess xvnc, long deadline, CancellationToken ct)
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (File.Exists(socketPath) && await VncBanner.TryReadAsync(socketPath, ct) is { } banner)
            {
                _logger.LogDebug("Xvnc of pgid {Pgid} answered {Banner}", pgid, banner);
                return;
            }
            ThrowIfDead(dir, leader, xvnc);
            if (_time.GetTimestamp() > deadline) throw new SessionStartFailure("timed out waiting for Xvnc to accept RFB connections", false);
            await Task.Delay(StartPollInterval, _time, ct);
        }
    }

    private static void ThrowIfDead(string dir, RecordedProcess leader, RecordedProcess? xvnc)
    {
        if (leader.IsAlive && (xvnc is null || xvnc.IsAlive)) return;
        throw xvnc is { IsAlive: true } ? AppExited(dir) : XvncExited(dir);
    }

    /// <summary>Xvnc ended during the start, with its log's words and whether another X server holds the display (then the start is retried on another one).</summary>
    private static SessionStartFailure XvncExited(string dir) =>
        new($"Xvnc exited during start: {LogTail(dir)}", DisplayTaken(LogTail(dir, lines: 15)));

    private static SessionStartFailure AppExited(string dir) => new($"the app exited right after it started: {LogTail(dir)}", false);

    public async Task StopAsync(string sessionId, CancellationToken ct)
    {
        if (!_sessions.TryGetValue(sessionId, out var session))
        {
            return; // idempotent: unknown = already stopped
        }
        await session.Gate.WaitAsync(ct);
        try
        {
            if (!_sessions.ContainsKey(sessionId)) return;
            var r = session.Record;
            await KillSessionAsync(r, ct);
            Forget(session, removeFolder: true);
            _logger.LogInformation("Session {SessionId} stopped", sessionId);
            _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = sessionId, State = ObservedStates.Stopped });
        }
        finally
        {
            session.Gate.Release();
        }
    }

    public Task HibernateAsync(string sessionId, CancellationToken ct) =>
        SignalAsync(sessionId, Posix.SIGSTOP, ObservedStates.Hibernated, ct);

    public Task WakeAsync(string sessionId, CancellationToken ct) =>
        SignalAsync(sessionId, Posix.SIGCONT, ObservedStates.Running, ct);

    /// <summary>
    /// Hibernate (SIGSTOP) or wake (SIGCONT). The record says "running" whenever the session's processes may run: a
    /// hibernate saves "hibernated" only once every process stopped, and a wake saves "running" before it continues any.
    /// An agent that ends between the two steps thus leaves a running record with stopped processes, which the next
    /// start continues (<see cref="InitializeAsync"/>), never a hibernated record over a desktop that runs on.
    /// </summary>
    private async Task SignalAsync(string sessionId, int signal, string newState, CancellationToken ct)
    {
        var session = _sessions.GetValueOrDefault(sessionId) ?? throw new SessionRuntimeException($"session {sessionId} is not on this agent");
        await session.Gate.WaitAsync(ct);
        try
        {
            var r = session.Record;
            if (!r.Xvnc.IsAlive) throw new SessionRuntimeException($"session {sessionId} is no longer running");
            if (signal == Posix.SIGCONT)
            {
                // Saved first; when that fails nothing was continued, and the session stays what its record says.
                SaveState(session, newState, undoSignal: null);
                if (!SignalSession(r, signal))
                {
                    SaveState(session, r.State, undoSignal: null);
                    throw new SessionRuntimeException($"session {sessionId}: signalling its process group failed");
                }
            }
            else
            {
                if (!SignalSession(r, signal)) throw new SessionRuntimeException($"session {sessionId}: signalling its process group failed");
                try
                {
                    await WaitUntilStoppedAsync(r, ct);
                }
                catch (OperationCanceledException)
                {
                    // The agent is stopping before the session is hibernated: it stays running, as the record says.
                    SignalSession(r, Posix.SIGCONT);
                    throw;
                }
                SaveState(session, newState, undoSignal: Posix.SIGCONT);
            }
            _observations.Writer.TryWrite(new SessionStatusPayload { SessionId = sessionId, State = newState });
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>
    /// Saves the session's record with <paramref name="newState"/> (nothing when it says so already). When the record cannot
    /// be saved the session stays what its record says (and what the control plane keeps it as when this fails), processes
    /// included: <paramref name="undoSignal"/>, when given, is sent to put them back.
    /// </summary>
    private void SaveState(ProcessSession session, string newState, int? undoSignal)
    {
        var r = session.Record;
        if (r.State == newState) return;
        var changed = r with { State = newState };
        try
        {
            changed.Save(session.Dir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            if (undoSignal is { } undo) SignalSession(r, undo);
            _logger.LogWarning("Session {SessionId} stays {State}: its record could not be saved ({Error})", r.SessionId, r.State, ex.Message);
            throw new SessionRuntimeException($"session {r.SessionId} stays {r.State}: its record could not be saved: {ex.Message}", ex);
        }
        session.Record = changed;
        _logger.LogInformation("Session {SessionId} is now {State}", r.SessionId, newState);
    }

    /// <summary>
    /// SIGSTOP takes effect when a process next leaves the kernel: one in the middle of a disk write (state D) stops
    /// only after it, which under heavy disk load took more than 2 s (a full test run caught a session process still
    /// in D then). "hibernated" is reported once every process of the session is really stopped, so the state never
    /// runs ahead of the processes. A group that does not stop within <see cref="StopConfirmTimeout"/> is continued
    /// again (it stays running, as the failed command then reports) and the hibernate fails with the culprit. A shell
    /// waiting in the kernel for a vfork child that was stopped before its exec counts as stopped (<see cref="ProcFs.IsHeld"/>).
    /// </summary>
    private async Task WaitUntilStoppedAsync(ProcessSessionRecord r, CancellationToken ct)
    {
        var sessionId = r.SessionId;
        var deadline = _time.GetTimestamp() + (long)(StopConfirmTimeout.TotalSeconds * _time.TimestampFrequency);
        while (true)
        {
            var members = Members(r);
            var moving = members.Where(m => !ProcFs.IsHeld(m, members)).ToList();
            if (moving.Count == 0) return;
            if (_time.GetTimestamp() > deadline)
            {
                SignalSession(r, Posix.SIGCONT);
                throw new SessionRuntimeException(
                    $"session {sessionId}: {moving.Count} process(es) did not stop within {StopConfirmTimeout.TotalSeconds:0} s " +
                    $"(pid {moving[0].Pid} in state {moving[0].State}); the session keeps running");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(5), _time, ct);
        }
    }

    /// <summary>
    /// Signals the session's process group and, with a cgroup, the processes that left the group (setsid), so a
    /// hibernated session uses no CPU at all. A group that is no longer provably the session's (<see cref="OwnsGroup"/>)
    /// is not signalled; its recorded processes that still live are, one by one. False when none of it is left.
    /// </summary>
    private bool SignalSession(ProcessSessionRecord r, int signal)
    {
        var recorded = r.Processes;
        var delivered = OwnsGroup(r.Pgid, recorded) && Posix.SignalGroup(r.Pgid, signal);
        if (!delivered)
        {
            foreach (var process in recorded.Where(p => p.IsAlive))
                delivered |= Posix.Signal(process.Pid, signal);
        }
        foreach (var pid in _cgroups?.Members(r.SessionId) ?? []) Posix.Signal(pid, signal);
        return delivered;
    }

    /// <summary>
    /// Whether process group <paramref name="pgid"/> is still the session's: one of its recorded processes (pid and
    /// start time checked) still lives in it. A group whose processes all left it (setsid) and ended gives its number
    /// back, and the kernel may hand it to somebody else's group (with pid_max at 32 768, soon): signalling the number
    /// then would stop or kill another user's processes. While a recorded process is in the group, the number cannot
    /// be reused.
    /// </summary>
    private static bool OwnsGroup(int pgid, IEnumerable<RecordedProcess> recorded) =>
        recorded.Any(p => p.IsAlive && ProcFs.Stat(p.Pid) is { } stat && stat.Pgid == pgid);

    /// <summary>The session's live processes: its process group (when still its own) and, with a cgroup, those that left the group.</summary>
    private List<(int Pid, char State, int Ppid)> Members(ProcessSessionRecord r)
    {
        var recorded = r.Processes;
        var members = OwnsGroup(r.Pgid, recorded)
            ? ProcFs.GroupStates(r.Pgid).ToList()
            : [.. recorded.Where(p => p.IsAlive).Select(p => (p.Pid, Stat: ProcFs.Stat(p.Pid)))
                .Where(x => x.Stat is not null).Select(x => (x.Pid, x.Stat!.Value.State, x.Stat.Value.Ppid))];
        foreach (var pid in _cgroups?.Members(r.SessionId) ?? [])
        {
            if (members.All(m => m.Pid != pid) && ProcFs.Stat(pid) is { } stat && stat.State is not ('Z' or 'X'))
                members.Add((pid, stat.State, stat.Ppid));
        }
        return members;
    }

    /// <summary>
    /// Connects to the session's Xvnc. A hibernated session is refused with the reason: its stopped Xvnc would take
    /// the connection into its backlog and never answer it (the viewer waiting on a black "Connecting…" screen), and
    /// replay whatever the viewer sent into it on wake. Under the session's gate, so a hibernate cannot stop Xvnc
    /// between the look at the state and the connect.
    /// </summary>
    public async Task<Stream> ConnectVncAsync(string sessionId, CancellationToken ct)
    {
        var session = _sessions.GetValueOrDefault(sessionId) ?? throw new SessionRuntimeException($"session {sessionId} is not on this agent");
        await session.Gate.WaitAsync(ct);
        try
        {
            if (!_sessions.ContainsKey(sessionId)) throw new SessionRuntimeException($"session {sessionId} is not on this agent");
            if (session.Record.State == ObservedStates.Hibernated)
            {
                throw new SessionRuntimeException($"session {sessionId} is hibernated: wake it to view it")
                {
                    ViewerReason = "The session is hibernated.",
                };
            }
            return await ConnectXvncAsync(session, ct);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    private async Task<Stream> ConnectXvncAsync(ProcessSession session, CancellationToken ct)
    {
        var sessionId = session.Record.SessionId;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(session.Record.SocketPath), ct);
            // The socket's folder is the session user's: they can put a link to any unix socket in its place (the
            // system bus, systemd's, another session's Xvnc), which the agent, as root, would reach and hand to the
            // viewer. So the listening end must be this session's own Xvnc, by the kernel's word (SO_PEERCRED).
            var listener = PeerPid(socket);
            if (listener != session.Record.Xvnc.Pid)
            {
                _logger.LogWarning("Session {SessionId}: its VNC socket leads to process {Pid}, not to its Xvnc ({Xvnc}); refused",
                    sessionId, listener, session.Record.Xvnc.Pid);
                throw new SessionRuntimeException($"session {sessionId}: its VNC socket does not lead to its Xvnc");
            }
            // Only the stream bridge's copy loop reads and writes it from here on.
            InlineSocketCompletions.TryEnable(socket);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new SessionRuntimeException($"session {sessionId}: VNC endpoint unreachable ({ex.SocketErrorCode})", ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The pid of the process that listens at the other end of a connected unix socket (SO_PEERCRED's <c>pid</c>).</summary>
    private static int PeerPid(Socket socket)
    {
        const int SolSocket = 1, SoPeerCred = 17;
        Span<byte> credentials = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        return socket.GetRawSocketOption(SolSocket, SoPeerCred, credentials) >= 4
            ? System.Runtime.InteropServices.MemoryMarshal.Read<int>(credentials)
            : -1;
    }

    private async Task MonitorAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_options.MonitorInterval, _time);
        var nextPrune = _time.GetUtcNow() + SessionFolderPruneInterval;
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try
                {
                    await CheckSessionsAsync(ct);
                    if (_time.GetUtcNow() >= nextPrune)
                    {
                        nextPrune = _time.GetUtcNow() + SessionFolderPruneInterval;
                        PruneEndedSessionFolders();
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    _logger.LogError(ex, "Session monitor pass failed");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Finds sessions whose Xvnc or app ended and reports them as crashed or exited: once their processes are gone, whatever
    /// becomes of their files. What goes wrong with one session is logged and leaves the others of the pass to be judged;
    /// the session is judged again on the next pass.
    /// </summary>
    private async Task CheckSessionsAsync(CancellationToken ct)
    {
        foreach (var session in _sessions.Values)
        {
            // A session in the middle of a command is judged on the next pass.
            if (!await session.Gate.WaitAsync(0, ct)) continue;
            try
            {
                if (!_sessions.ContainsKey(session.Record.SessionId)) continue;
                if (Judge(session) is not { } ending)
                {
                    CapLog(session);
                    continue;
                }
                var r = session.Record;
                await KillSessionAsync(r, ct);
                try
                {
                    Forget(session, removeFolder: false);
                }
                finally
                {
                    _logger.LogWarning("Session {SessionId} {State}: {Reason}", r.SessionId, ending.State, ending.Reason);
                    _observations.Writer.TryWrite(ending);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                _logger.LogError(ex, "Session monitor pass failed for session {SessionId}; it is judged again on the next pass", session.Record.SessionId);
            }
            finally
            {
                session.Gate.Release();
            }
        }
    }

    private SessionStatusPayload? Judge(ProcessSession session)
    {
        var r = session.Record;
        if (!r.Xvnc.IsAlive)
        {
            return new SessionStatusPayload { SessionId = r.SessionId, State = ObservedStates.Crashed, Reason = $"Xvnc is gone{OutOfMemory(r.SessionId)}: {LogTail(session.RunDir)}" };
        }
        if (r.App.IsAlive) return null;
        var exitPath = Path.Combine(session.RunDir, SessionLauncher.AppExitFile);
        if (UntrustedFile.ReadHead(exitPath, 64) is { } exitText && int.TryParse(exitText.Trim(), out var code))
        {
            // The shell reports death by signal N as 128+N.
            return code > 128
                ? new SessionStatusPayload { SessionId = r.SessionId, State = ObservedStates.Crashed, Reason = $"app killed by signal {code - 128}{OutOfMemory(r.SessionId)}" }
                : new SessionStatusPayload { SessionId = r.SessionId, State = ObservedStates.Exited, Reason = $"app exited with code {code}" };
        }
        // The leader writes the exit code right after the app ends: give it until the next pass.
        return r.Leader.IsAlive
            ? null
            : new SessionStatusPayload { SessionId = r.SessionId, State = ObservedStates.Crashed, Reason = "session processes were killed" };
    }

    /// <summary>
    /// Empties a live session's log once it is larger than <see cref="AgentOptions.SessionLogMaxBytes"/> (see there why);
    /// its processes append to it, so they go on writing from the start of the file, and the cut says so in its first
    /// line. The log is in the session user's folder: it is opened without following a link, and only a regular file with
    /// one name that belongs to the session's account (or the agent's) is cut, never a file somebody linked there.
    /// </summary>
    private void CapLog(ProcessSession session)
    {
        var path = Path.Combine(session.RunDir, SessionLauncher.LogFile);
        if (Posix.SizeOf(path) is not { } size || size <= _options.SessionLogMaxBytes) return;
        try
        {
            using var file = Posix.OpenAppendNoFollow(path);
            var facts = file is null ? null : Posix.Facts(file);
            var owner = Posix.Entry(session.RunDir)?.Uid;
            if (facts is not { IsRegular: true, Links: 1 } known || (known.Uid != owner && known.Uid != Posix.EffectiveUid))
            {
                if (!session.LogCapped)
                    _logger.LogWarning("The log {Path} of session {SessionId} is over {Cap} bytes but is not the session's own regular file: left alone",
                        path, session.Record.SessionId, _options.SessionLogMaxBytes);
                session.LogCapped = true;
                return;
            }
            Posix.Truncate(file!, 0);
            RandomAccess.Write(file!, Encoding.UTF8.GetBytes(
                $"[streamspace agent {_time.GetUtcNow():O}] this log reached {known.Size} bytes, over the agent's cap of {_options.SessionLogMaxBytes}: what came before was removed\n"), 0);
            if (!session.LogCapped)
                _logger.LogWarning("The log of session {SessionId} reached {Size} bytes, over the cap of {Cap} (SessionLogMaxBytes): emptied, and emptied " +
                    "again each time it is over (said once per session)", session.Record.SessionId, known.Size, _options.SessionLogMaxBytes);
            session.LogCapped = true;
        }
        catch (IOException ex)
        {
            if (!session.LogCapped)
                _logger.LogWarning("The log of session {SessionId} could not be cut (said once per session): {Error}", session.Record.SessionId, ex.Message);
            session.LogCapped = true;
        }
    }

    /// <summary>Why a session's process died, when its memory limit was the cause; empty otherwise.</summary>
    private string OutOfMemory(string sessionId) =>
        _cgroups?.HitMemoryLimit(sessionId) == true ? " (out of memory: the session reached its template's memory limit)" : "";

    /// <summary>The session's template resources as the kernel takes them (validated by the control plane already).</summary>
    private static (long Cpu, long Memory) Resources(SessionStartArgs args) =>
        ResourceQuantity.TryParseCpu(args.Resources.Cpu, out var cpu, out var cpuError)
            ? ResourceQuantity.TryParseMemory(args.Resources.Memory, out var memory, out var memoryError)
                ? (cpu, memory)
                : throw new SessionRuntimeException($"resources.memory {memoryError}")
            : throw new SessionRuntimeException($"resources.cpu {cpuError}");

    /// <summary>SIGTERM the group, SIGKILL what is left after the grace period. Only when the group is provably ours.</summary>
    /// <summary>
    /// Ends a session's processes: its group (<see cref="KillGroupAsync"/>), then whatever is left in its cgroups
    /// (processes that left the group), and removes the cgroups.
    /// </summary>
    private async Task KillSessionAsync(ProcessSessionRecord r, CancellationToken ct)
    {
        await KillGroupAsync(r.Pgid, r.Processes, ct);
        if (_cgroups is not null) await _cgroups.KillAndRemoveAsync(r.SessionId, _time, ct);
    }

    private async Task KillGroupAsync(int pgid, IReadOnlyList<RecordedProcess> recorded, CancellationToken ct)
    {
        // A pgid is only signalled while one of our recorded processes is still in it (OwnsGroup): otherwise the number
        // may belong to somebody else by now. Then the recorded processes that live are killed one by one (the cgroup,
        // with limits, takes the rest). Once the group is ours it stays so while it has members: the number is not reused.
        if (!OwnsGroup(pgid, recorded))
        {
            foreach (var process in recorded.Where(p => p.IsAlive)) Posix.Signal(process.Pid, Posix.SIGKILL);
            return;
        }
        Posix.SignalGroup(pgid, Posix.SIGTERM);
        Posix.SignalGroup(pgid, Posix.SIGCONT); // a hibernated (stopped) group only sees SIGTERM once continued
        var deadline = _time.GetTimestamp() + (long)(_options.StopGracePeriod.TotalSeconds * _time.TimestampFrequency);
        while (ProcFs.GroupMembers(pgid).Count > 0 && _time.GetTimestamp() < deadline)
        {
            await Task.Delay(PollInterval, _time, ct);
        }
        if (ProcFs.GroupMembers(pgid).Count > 0)
        {
            _logger.LogWarning("Process group {Pgid} ignored SIGTERM for {Grace}; sending SIGKILL", pgid, _options.StopGracePeriod);
            Posix.SignalGroup(pgid, Posix.SIGKILL);
            for (var i = 0; i < 40 && ProcFs.GroupMembers(pgid).Count > 0; i++)
            {
                await Task.Delay(PollInterval, _time, ct);
            }
        }
    }

    /// <summary>
    /// Drops a session whose processes are gone, and what it took: its X files, temporary home, socket folder, and its
    /// folder or (to keep the log) its record. Never throws: what cannot be removed is logged and left behind.
    /// </summary>
    private void Forget(ProcessSession session, bool removeFolder)
    {
        var r = session.Record;
        _sessions.TryRemove(r.SessionId, out _);
        session.Leader?.Dispose();
        CleanupX11(r.Display);
        if (r.TemporaryHome) TryDelete(r.HomePath);
        // Lexically normalized: every check below is made on the very path that is removed.
        if (Path.IsPathFullyQualified(r.SocketPath) && Path.GetDirectoryName(Path.GetFullPath(r.SocketPath)) is { } socketDir && Posix.Entry(socketDir) is not null)
        {
            if (SocketDirProblem(socketDir, session.RunDir, Posix.EffectiveUid) is { } problem)
                _logger.LogWarning("The socket folder {Folder} of session {SessionId} is left in place: {Problem}", socketDir, r.SessionId, problem);
            else
                TryDelete(socketDir);
        }
        if (!r.TemporaryHome && HomeOwnerId(r.HomePath) is { } owner) CompleteDeferredHomeDelete(owner);
        if (removeFolder)
        {
            TryDelete(session.Dir);
        }
        else
        {
            // Keep the folder (its log tells why the session ended) but drop the record, so it is not re-adopted.
            try
            {
                File.Delete(Path.Combine(session.Dir, ProcessSessionRecord.FileName));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Re-adopted by the agent's next start, which finds its processes gone and forgets it again.
                _logger.LogWarning("The record of ended session {SessionId} could not be deleted: {Error}", r.SessionId, ex.Message);
            }
        }
    }

    /// <summary>
    /// Unix socket paths are limited to 107 bytes, and a state folder can be deep (a repository checkout, a
    /// test's temp folder). So the VNC socket lives in a short base of the agent's own (<see cref="SocketBase"/>) in a
    /// folder named by a hash of the session folder, owned by the session user with mode 0700: reachable by the agent
    /// and that user only.
    /// </summary>
    private string PrepareSocketDir(string sessionDir, SessionUser user)
    {
        try
        {
            if (Posix.Entry(SocketBase) is null) Directory.CreateDirectory(SocketBase);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // E.g. the runtime folder it lies in was removed when the agent account's last login ended.
            throw new SessionRuntimeException($"sessions cannot start on this agent: its socket folder {SocketBase} cannot be made: {ex.Message}");
        }
        // Checked after the creation too: somebody may have made it in between (the creation then does nothing).
        if (SocketBaseProblem(SocketBase, Posix.EffectiveUid) is { } problem) throw new SessionRuntimeException(problem);
        File.SetUnixFileMode(SocketBase, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        var dir = SocketDirOf(sessionDir);
        if (new DirectoryInfo(dir) is { Exists: true, LinkTarget: not null } || File.Exists(dir)) File.Delete(dir);
        TryDelete(dir);
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, PrivateDir);
        user.Own(dir);
        return Path.Combine(dir, SessionLauncher.SocketFile);
    }

    /// <summary>The socket folder <see cref="PrepareSocketDir"/> gives the session of <paramref name="sessionDir"/> in the current base.</summary>
    private string SocketDirOf(string sessionDir) =>
        Path.Combine(SocketBase, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(sessionDir))))[..16]);

    /// <summary>Removes the socket folder of a session without a record (<see cref="InitializeAsync"/>), when it is one the agent made.</summary>
    private void RemoveSocketDirOf(string sessionDir)
    {
        var socketDir = SocketDirOf(sessionDir);
        if (Posix.Entry(socketDir) is null) return;
        if (SocketDirProblem(socketDir, ProcessSession.RunDirOf(sessionDir), Posix.EffectiveUid) is { } problem)
            _logger.LogWarning("The socket folder {Folder} of the ended session in {SessionFolder} is left in place: {Problem}", socketDir, sessionDir, problem);
        else
            TryDelete(socketDir);
    }

    /// <summary>
    /// Why a stopped session's socket folder (its record's socket path's parent) must not be removed, or null. It need not
    /// lie in the current <see cref="SocketBase"/>: a session started before an upgrade moved the base keeps its folder in
    /// the old one. So the folder must be one this runtime makes (<see cref="PrepareSocketDir"/>): named by the hash,
    /// a folder and not a link, of the session's account (the owner of its <paramref name="runDir"/>) or the agent's, in a
    /// base that is the agent's own folder (<see cref="SocketBaseProblem"/>), where nobody else can have put it or swapped it.
    /// </summary>
    internal static string? SocketDirProblem(string socketDir, string runDir, int agentUid)
    {
        if (!Path.IsPathFullyQualified(socketDir) || Path.GetFullPath(socketDir) != socketDir || Path.GetDirectoryName(socketDir) is not { } socketBase)
            return "it is not a normalized absolute path";
        if (!SocketDirName().IsMatch(Path.GetFileName(socketDir))) return "its name is not one the agent gives a socket folder";
        if (SocketBaseProblem(socketBase, agentUid) is not null) return $"the folder it lies in, {socketBase}, is not a folder of the agent's own account";
        return Posix.Entry(socketDir) switch
        {
            null => null, // gone already: nothing to remove
            { IsLink: true } => "it is a link",
            { IsDirectory: false } => "it is not a folder",
            { Uid: var owner } when owner != agentUid && owner != Posix.Entry(runDir)?.Uid => $"it belongs to uid {owner}, neither the session's account nor the agent's",
            _ => null,
        };
    }

    /// <summary>The name <see cref="PrepareSocketDir"/> gives a socket folder: 16 hex digits of a hash.</summary>
    [GeneratedRegex(@"^[0-9a-f]{16}\z")]
    private static partial Regex SocketDirName();

    /// <summary>
    /// The base of the sessions' socket folders: <c>/run/streamspace</c> for a root agent; otherwise the agent account's
    /// runtime folder (<c>$XDG_RUNTIME_DIR/streamspace</c>, private to that account), and without one
    /// <c>/tmp/streamspace-&lt;user&gt;</c>, a name anybody can take first (<see cref="SocketBaseProblem"/>). Set by tests to
    /// a folder somebody else made.
    /// </summary>
    internal string SocketBase { get; init; } =
        SocketBaseFor(Environment.IsPrivilegedProcess && Directory.Exists("/run"), Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"),
            Environment.UserName, Posix.EffectiveUid);

    /// <summary>
    /// The runtime folder only when it is there and the agent account's own: <c>su</c> keeps the caller's
    /// XDG_RUNTIME_DIR (another account's folder, or none), and a container may name one it never made.
    /// </summary>
    internal static string SocketBaseFor(bool root, string? runtimeDir, string userName, int agentUid) =>
        root ? "/run/streamspace"
        : runtimeDir is { Length: > 0 } && Path.IsPathFullyQualified(runtimeDir) && SocketBaseProblem(runtimeDir, agentUid) is null
            ? Path.Combine(runtimeDir, "streamspace")
        : Path.Combine(Path.GetTempPath(), $"streamspace-{userName}");

    /// <summary>
    /// Why the agent must not use <paramref name="path"/> as its socket base, or null: it must be a folder (not a link) of
    /// the agent's own account. One that another account made (possible in /tmp) lets that account replace or remove
    /// every session's socket folder in it, and starts failed with a bare "Access to the path ... is denied".
    /// </summary>
    internal static string? SocketBaseProblem(string path, int agentUid)
    {
        const string Fix = "remove it, or run the agent with XDG_RUNTIME_DIR set to a folder of its own account";
        return Posix.Entry(path) switch
        {
            null => $"sessions cannot start on this agent: its socket folder {path} could not be made",
            { IsLink: true } => $"sessions cannot start on this agent: its socket folder {path} is a link, and the agent uses only a folder of its own ({Fix})",
            { IsDirectory: false } => $"sessions cannot start on this agent: its socket folder {path} is not a folder ({Fix})",
            { Uid: var owner } when owner != agentUid =>
                $"sessions cannot start on this agent: its socket folder {path} belongs to uid {owner}, not to the agent's account (uid {agentUid}), " +
                $"so that account could replace what the agent puts in it ({Fix})",
            _ => null,
        };
    }

    private void PrepareFolders()
    {
        var state = Path.GetFullPath(_options.StateFolder);
        Directory.CreateDirectory(_sessionsDir);
        Directory.CreateDirectory(_homesDir);
        if (_user!.SwitchUser)
        {
            // The session user must reach its own session folder and home, but list nothing else.
            File.SetUnixFileMode(state, TraverseOnly);
            File.SetUnixFileMode(_sessionsDir, TraverseOnly);
            File.SetUnixFileMode(_homesDir, TraverseOnly);
            // Xvnc creates its X socket here; as root we make sure it exists with the usual sticky mode.
            Directory.CreateDirectory(X11SocketDir);
            File.SetUnixFileMode(X11SocketDir, (UnixFileMode)Convert.ToInt32("1777", 8));
            if (UnreachableStateFolder() is { } unreachable) _logger.LogError("{Problem}", unreachable);
        }
    }

    /// <summary>
    /// Why the session accounts cannot reach the state folder (an ancestor without search permission for others, e.g. a
    /// data folder made under umask 077), or null. Every start would otherwise end in Xvnc failing to write its log
    /// ("Xvnc exited during start: (no log)"). Checked at each start, so fixing the mode needs no agent restart.
    /// </summary>
    private string? UnreachableStateFolder()
    {
        if (_user is not { SwitchUser: true }) return null;
        var state = Path.GetFullPath(_options.StateFolder);
        if (UnixFolders.OthersCannotEnter(Path.GetDirectoryName(state)) is not { } closed) return null;
        return $"sessions cannot start on this agent: their accounts cannot reach its state folder {state}, because {closed} " +
            $"is mode {UnixFolders.ModeOf(closed)} (give others search permission: chmod o+x {closed}, " +
            "or put the state folder elsewhere with STREAMSPACE_AGENT_STATE)";
    }

    /// <summary>
    /// What an operator must know when sessions cannot get accounts of their own (the agent is not root): they then run as
    /// the agent's account, so every session's programs can reach every other session and whatever that account can,
    /// which for the embedded agent includes the control plane's data folder (its database holds the token signing key).
    /// </summary>
    internal static string? IsolationWarning(SessionUser user) => user.SwitchUser ? null :
        $"Sessions run as this agent's own account ({user.Name}) because the agent is not root: they are not isolated from " +
        "each other nor from the agent (with the embedded agent, nor from the control plane's data folder, whose database holds " +
        "the token signing key). Run the agent as root to give each StreamSpace user's sessions an unprivileged account of their own.";

    /// <summary>
    /// The account a session of this StreamSpace user runs as (see <see cref="SessionUser"/>), keyed by
    /// <paramref name="ownerKey"/> (see <see cref="OwnerKey"/>).
    /// </summary>
    private SessionUser UserFor(string ownerKey, string username)
    {
        var shared = _user ?? throw new InvalidOperationException("runtime not initialized");
        if (!shared.SwitchUser || !_options.SessionUserPerOwner) return shared;
        return _owners.GetOrAdd(ownerKey, k => SessionUser.Resolve(SessionUser.AccountName(_options.SessionUser, k), username));
    }

    /// <summary>
    /// What keys an owner's account and persistent home (<c>homes/&lt;key&gt;</c>): <c>id.&lt;user id&gt;</c> (the dot keeps it
    /// apart from every username the control plane allows). A user id is never given to anybody else; a username is (an
    /// admin may delete a user and create another of that name), and keying by it handed the new user the old one's
    /// account and home. The username is the key only for control planes older than
    /// user ids, and for a persistent home such an agent made (<c>homes/&lt;username&gt;</c>) while a session of this
    /// agent still uses it; otherwise that home moves to the user id the first time its user asks for it (<see cref="PrepareHome"/>),
    /// when it is theirs (<see cref="LegacyHomeRefusal"/>).
    /// </summary>
    private string OwnerKey(SessionStartArgs args)
    {
        if (args.UserId is null) return args.User;
        var key = "id." + args.UserId;
        if (!args.PersistentHome || Directory.Exists(Path.Combine(_homesDir, key))) return key;
        var legacy = Path.Combine(_homesDir, args.User);
        return _sessions.Values.Any(s => s.Record.HomePath == legacy) && LegacyHomeRefusal(args, legacy) is null ? args.User : key;
    }

    /// <summary>
    /// Why the home an older agent kept by username (<paramref name="legacy"/>) is not this user's, or null. An agent
    /// from before user ids cannot say whose it was: the user who has the name now, or an earlier one an admin deleted.
    /// A home is made and changed only by its user's sessions, after that user was created; so one last changed before
    /// this user was created belongs to an earlier user of the name. (The folder's own time, which a session changes by
    /// adding or removing a file at its top, never later than the newest change inside: the stricter test.)
    /// </summary>
    private static string? LegacyHomeRefusal(SessionStartArgs args, string legacy)
    {
        if (args.UserCreatedAt is not { } created)
            return "the control plane does not say when this user was created, so it may have belonged to an earlier user of that name";
        var changed = new DateTimeOffset(Directory.GetLastWriteTimeUtc(legacy), TimeSpan.Zero);
        return changed > created ? null
            : $"it was last changed at {changed:O}, before this user was created ({created.ToUniversalTime():O}), so it belonged to an earlier user of that name";
    }

    private (string Home, bool Temporary) PrepareHome(SessionStartArgs args, string ownerKey, string sessionDir, SessionUser user)
    {
        var home = args.PersistentHome ? Path.Combine(_homesDir, ownerKey) : Path.Combine(sessionDir, "home");
        var legacy = Path.Combine(_homesDir, args.User);
        if (args.PersistentHome && ownerKey != args.User && !Directory.Exists(home) && Directory.Exists(legacy))
        {
            if (LegacyHomeRefusal(args, legacy) is { } refusal)
            {
                _logger.LogWarning("The persistent home {Legacy}, kept by username by an older agent, is left where it is and {User} (user id {UserId}) " +
                    "gets a new one at {Home}: {Why} (if it is theirs, move its contents there by hand)", legacy, args.User, args.UserId, home, refusal);
            }
            else
            {
                try
                {
                    Directory.Move(legacy, home);
                    _logger.LogInformation("Persistent home of {User} moved from {Legacy} to {Home}: homes are kept by user id", args.User, legacy, home);
                }
                catch (IOException) when (Directory.Exists(home))
                {
                    // Another start of this user's sessions moved it first.
                }
            }
        }
        Directory.CreateDirectory(home);
        File.SetUnixFileMode(home, PrivateDir);
        // A persistent home may come from the time its sessions ran under the shared account or under an account keyed
        // by the username: all of it becomes theirs.
        if (args.PersistentHome) user.OwnTree(home);
        else user.Own(home);
        return (home, !args.PersistentHome);
    }

    /// <summary>
    /// Deletes <c>homes/id.&lt;user id&gt;</c>, the persistent home of a user the control plane deleted. Its user id is
    /// never given to anybody else, so no later session can want it. A session still running or hibernated here with that
    /// home (the control plane ended it without the agent's word, e.g. its stop expired, and will stop it by reconciliation
    /// now that it knows nothing of it) keeps it until it ends: the deletion is recorded in the state folder and done
    /// when the last such session ends, or at the agent's next start if it ended while the agent was away, rather than
    /// pulling the files from under its programs or refusing (a refused <c>home.delete</c> is never sent again). A home
    /// kept by username by an older agent is left alone: that name may belong to somebody else by now.
    /// </summary>
    public Task DeleteHomeAsync(string userId, CancellationToken ct)
    {
        ValidateName(userId, "user id");
        var home = HomeOf(userId);
        lock (_homeDeletes)
        {
            try
            {
                RecordDurably(_deletedUsersDir, userId);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new SessionRuntimeException($"the deletion of user {userId} could not be recorded: {ex.Message}", ex);
            }
            var users = HomeUsers(home);
            if (users.Count > 0)
            {
                try
                {
                    RecordDurably(_homeDeletesDir, userId);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    throw new SessionRuntimeException(
                        $"the persistent home of user {userId} is in use by session {string.Join(", ", users)}, and its deletion once they end could not be recorded: {ex.Message}", ex);
                }
                _logger.LogInformation("The persistent home {Home} of deleted user {UserId} is deleted once session {SessionIds} ends: it still runs here",
                    home, userId, string.Join(", ", users));
            }
            else
            {
                DeleteHome(userId);
            }
        }
        return Task.CompletedTask;
    }

    /// <summary>The persistent home of the user with id <paramref name="userId"/>: <c>homes/id.&lt;user id&gt;</c>.</summary>
    private string HomeOf(string userId) => Path.Combine(_homesDir, "id." + userId);

    /// <summary>The user id whose <see cref="HomeOf"/> <paramref name="home"/> is; null for a home kept by username.</summary>
    private string? HomeOwnerId(string home) =>
        Path.GetDirectoryName(home) == _homesDir && Path.GetFileName(home) is { } name && name.StartsWith("id.", StringComparison.Ordinal)
            ? name["id.".Length..]
            : null;

    /// <summary>The record that the home of <paramref name="userId"/> is to be deleted once no session uses it.</summary>
    private string DeferredHomeDelete(string userId) => Path.Combine(_homeDeletesDir, userId);

    /// <summary>The record that user <paramref name="userId"/> was deleted (see <see cref="_deletedUsersDir"/>).</summary>
    private string DeletedUser(string userId) => Path.Combine(_deletedUsersDir, userId);

    /// <summary>
    /// Makes the empty file <paramref name="name"/> in <paramref name="folder"/> (made 0700 when missing, the agent's alone
    /// like its command records) so that it survives a crash or power loss: the command it stands for is answered done.
    /// </summary>
    private void RecordDurably(string folder, string name)
    {
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder, PrivateDir);
            Posix.SyncFolder(Path.GetDirectoryName(folder)!);
        }
        var path = Path.Combine(folder, name);
        if (!File.Exists(path)) StreamSpace.Agent.Commands.DurableFile.Replace(path, []);
    }

    /// <summary>The sessions of this agent that use <paramref name="home"/> as their persistent home, running or starting, in order.</summary>
    private List<string> HomeUsers(string home) =>
        _sessions.Values.Where(s => !s.Record.TemporaryHome && s.Record.HomePath == home).Select(s => s.Record.SessionId)
            .Concat(_startingHomes.Where(s => s.Value == home).Select(s => s.Key))
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

    /// <summary>Removes a deleted user's home and the record of its deferred deletion; idempotent. Called under <see cref="_homeDeletes"/>.</summary>
    private void DeleteHome(string userId)
    {
        var home = HomeOf(userId);
        if (Posix.Entry(home) is not null)
        {
            try
            {
                RemoveTree(home);
            }
            catch (IOException ex)
            {
                throw new SessionRuntimeException($"the persistent home of user {userId} could not be deleted: {ex.Message}", ex);
            }
            _logger.LogInformation("Deleted the persistent home {Home} of user {UserId}: the control plane deleted that user", home, userId);
        }
        var marker = DeferredHomeDelete(userId);
        if (File.Exists(marker)) File.Delete(marker); // File.Delete throws when the folder is not there (no deletion was ever deferred)
    }

    /// <summary>
    /// Does the deferred deletion of the home of <paramref name="userId"/> (see <see cref="DeleteHomeAsync"/>), if there is
    /// one, once no session uses that home. Never throws: a home that cannot be removed now is tried again at the agent's
    /// next start.
    /// </summary>
    private void CompleteDeferredHomeDelete(string userId)
    {
        lock (_homeDeletes)
        {
            if (!File.Exists(DeferredHomeDelete(userId)) || HomeUsers(HomeOf(userId)).Count > 0) return;
            try
            {
                DeleteHome(userId);
            }
            catch (Exception ex) when (ex is SessionRuntimeException or IOException or UnauthorizedAccessException)
            {
                _logger.LogWarning("The deferred deletion of {Home} failed; tried again when the agent starts: {Error}", HomeOf(userId), ex.Message);
            }
        }
    }

    /// <summary>At start: the deferred home deletions whose sessions ended while the agent was away (or whose deletion failed).</summary>
    private void CompleteDeferredHomeDeletes()
    {
        if (!Directory.Exists(_homeDeletesDir)) return;
        foreach (var marker in Directory.EnumerateFiles(_homeDeletesDir))
        {
            var userId = Path.GetFileName(marker);
            if (SafeName().IsMatch(userId)) CompleteDeferredHomeDelete(userId);
        }
    }

    /// <summary>
    /// The first display number from <see cref="AgentOptions.FirstDisplay"/> that no session of this agent uses and no X
    /// server holds. An X server holds a number while something listens on its socket (<see cref="ListeningDisplays"/>),
    /// or, while it starts, when its lock names a live X server of that display (<see cref="LockHeld"/>). The lock and
    /// socket files alone hold nothing: /tmp and /tmp/.X11-unix are everybody's (1777), so any session user could make
    /// them for every number and no session would start again, not even after an agent restart. Such files, and those a
    /// killed X server left, are removed and the number is used.
    /// </summary>
    private int ReserveDisplay(IReadOnlySet<int> taken)
    {
        lock (_reservedDisplays)
        {
            var used = _sessions.Values.Select(s => s.Record.Display).ToHashSet();
            var listening = ListeningDisplays();
            for (var n = _options.FirstDisplay; n < _options.FirstDisplay + _options.DisplayCount; n++)
            {
                if (used.Contains(n) || _reservedDisplays.Contains(n) || taken.Contains(n) || listening.Contains(n) || LockHeld(n)) continue;
                if (RemoveX11Files(n) is { Count: > 0 } removed)
                {
                    _logger.LogInformation("Display :{Display} is held by no X server; removed what claimed it: {Files}", n, string.Join(", ", removed));
                }
                // What could not be removed (another account's file, when the agent is not root) would stop Xvnc there.
                if (X11Files(n).Any(path => Posix.Entry(path) is not null)) continue;
                _reservedDisplays.Add(n);
                return n;
            }
        }
        throw new SessionRuntimeException("no free X display number");
    }

    private static string[] X11Files(int display) => [$"/tmp/.X{display}-lock", $"{X11SocketDir}/X{display}"];

    /// <summary>
    /// Whether the lock of <paramref name="display"/> belongs to an X server that runs for it and does not listen yet
    /// (it takes the lock first). An X server is told by its command line: its program's name starts with "X" (Xvnc,
    /// Xorg, Xvfb, Xwayland, ...) and its last <c>:N</c> argument, the display it serves, is this one. Anybody can write
    /// any pid into a lock file (pid 1 always lives); with that test one process can hold one number at most, as with
    /// the sockets it may listen on.
    /// </summary>
    private static bool LockHeld(int display)
    {
        // /tmp is everybody's: the lock may be anybody's FIFO or link (UntrustedFile).
        if (!int.TryParse(UntrustedFile.ReadHead($"/tmp/.X{display}-lock", 64)?.Trim(), out var pid) || pid <= 0) return false;
        string[] argv;
        try
        {
            argv = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false; // no such process
        }
        if (argv.Length == 0 || !Path.GetFileName(argv[0]).StartsWith('X')) return false;
        var served = argv.Skip(1).LastOrDefault(a => a.Length > 1 && a[0] == ':' && a.AsSpan(1).IndexOfAnyExceptInRange('0', '9') < 0);
        return served is not null && int.TryParse(served.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n == display;
    }

    /// <summary>Removes the lock and socket files of a display no X server holds (whatever they are: a folder too, never following a link); returns those removed.</summary>
    private List<string> RemoveX11Files(int display)
    {
        var removed = new List<string>();
        foreach (var path in X11Files(display))
        {
            if (Posix.Entry(path) is not { } entry) continue;
            try
            {
                if (entry.IsDirectory) RemoveTree(path);
                else File.Delete(path);
                removed.Add(path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _logger.LogWarning("Display :{Display} is held by no X server, but {Path} could not be removed: {Error}", display, path, ex.Message);
            }
        }
        return removed;
    }

    /// <summary>
    /// Displays some X server listens on, from /proc/net/unix: X servers also bind the abstract socket
    /// <c>@/tmp/.X11-unix/X&lt;n&gt;</c>, which stays even when the lock and socket files were removed.
    /// </summary>
    private static HashSet<int> ListeningDisplays()
    {
        var displays = new HashSet<int>();
        try
        {
            foreach (var line in File.ReadLines("/proc/net/unix"))
            {
                var at = line.IndexOf("/tmp/.X11-unix/X", StringComparison.Ordinal);
                if (at >= 0 && int.TryParse(line.AsSpan(at + "/tmp/.X11-unix/X".Length).Trim(), out var n)) displays.Add(n);
            }
        }
        catch (IOException)
        {
        }
        return displays;
    }

    /// <summary>
    /// A killed X server leaves its lock and socket behind; they would block the display number forever. Removed only
    /// while no X server holds the number (as <see cref="ReserveDisplay"/> decides): a session whose Xvnc died while the
    /// agent was away is forgotten after a restart, and another X server may have taken its number meanwhile. Files
    /// left here because of that are removed by the next <see cref="ReserveDisplay"/> once nothing holds the number.
    /// </summary>
    private static void CleanupX11(int display)
    {
        if (ListeningDisplays().Contains(display) || LockHeld(display)) return;
        try
        {
            File.Delete($"/tmp/.X{display}-lock");
            File.Delete($"{X11SocketDir}/X{display}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Another X server (of this or another agent) won the race for the display number between check and bind.</summary>
    private static bool DisplayTaken(string log) =>
        log.Contains("already active", StringComparison.OrdinalIgnoreCase)
        || log.Contains("remove /tmp/.X", StringComparison.Ordinal)
        || log.Contains("Cannot establish any listening sockets", StringComparison.Ordinal);

    private static string LogTail(string runDir, int lines = 3)
    {
        // The log sits in the session user's folder, and the app may write gigabytes to it (UntrustedFile).
        if (UntrustedFile.ReadTail(Path.Combine(runDir, SessionLauncher.LogFile)) is not { } text) return "(no log)";
        var tail = text.Split('\n').Where(l => !string.IsNullOrWhiteSpace(l)).TakeLast(lines);
        return string.Join(" | ", tail.Select(l => l.Trim()));
    }

    private void TryDelete(string path)
    {
        try
        {
            RemoveTree(path);
        }
        catch (IOException ex)
        {
            _logger.LogWarning("{Error}", ex.Message);
        }
    }

    /// <summary>
    /// Removes the folders of sessions that ended (or whose start the agent died in) more than
    /// <see cref="AgentOptions.CommandRetention"/> ago: their logs say why they ended, for a day. Runs at start and every
    /// <see cref="SessionFolderPruneInterval"/>, and never fails (it must not keep the agent from starting): a folder that
    /// cannot be removed (a mount left inside it) is left where it is, said once in a warning naming it and why. A start
    /// reuses a session's folder only when its own command is delivered again, which happens within the command's TTL (at
    /// most a day, the least retention), so a folder old enough to be pruned is never one a start is about to use.
    /// </summary>
    private void PruneEndedSessionFolders()
    {
        string[] folders;
        try
        {
            folders = Directory.GetDirectories(_sessionsDir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("The folders of ended sessions in {Folder} could not be listed for pruning: {Error}", _sessionsDir, ex.Message);
            return;
        }
        var cutoff = _time.GetUtcNow().UtcDateTime - _options.CommandRetention;
        foreach (var dir in folders)
        {
            if (_sessions.ContainsKey(Path.GetFileName(dir))) continue;
            try
            {
                if (Directory.GetLastWriteTimeUtc(dir) >= cutoff) continue;
                RemoveTree(dir);
                _unprunable.Remove(dir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                if (_unprunable.Add(dir))
                    _logger.LogWarning("The folder {Folder} of a session that ended more than {Retention} ago could not be removed and is left in place " +
                        "(said once): {Error}", dir, _options.CommandRetention, ex.Message);
            }
        }
    }

    /// <summary>
    /// Removes a folder whose contents a session user may own (a session's folder, a temporary home, a socket folder),
    /// as root. Directory.Delete walks by path: a user who swaps a folder inside for a link while it runs (a big folder
    /// makes the moment long) would have root empty the link's target, /etc say. GNU rm never follows a link, enters each
    /// folder by handle and checks it is the one it listed (and with --one-file-system never crosses into a mount).
    /// Throws <see cref="IOException"/> when it cannot (also when rm cannot be started: no free file descriptor or process).
    /// </summary>
    private static void RemoveTree(string path)
    {
        if (!Directory.Exists(path)) return;
        if (RunOn(path, "/bin/rm", "-rf", "--one-file-system") is not { } error) return;
        // Without root, rm cannot empty a folder its owner may not write, and sessions leave such trees (Go's module cache
        // is read-only on purpose). Their sessions ran as the agent's own account, so it may make them writable, and tries
        // once more. Root needs no write permission: its rm fails for reasons chmod does not change (a mount inside),
        // and chmod, which has no --one-file-system, would reach into that mount.
        if (Posix.EffectiveUid == 0 || Posix.Entry(path) is not { IsDirectory: true, IsLink: false }) throw new IOException(error);
        // -R follows no link it meets inside; path itself, which it would follow, is no link (checked above). What it
        // cannot change (another account's), the second rm names.
        RunOn(path, "/bin/chmod", "-R", "u+rwX");
        if (RunOn(path, "/bin/rm", "-rf", "--one-file-system") is { } again) throw new IOException(again);
    }

    /// <summary>Runs <paramref name="program"/> with <paramref name="options"/> on <paramref name="path"/>; null when it succeeded, else what it said.</summary>
    private static string? RunOn(string path, string program, params string[] options)
    {
        var start = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in options.Append("--").Append(path)) start.ArgumentList.Add(arg);
        System.Diagnostics.Process? process;
        try
        {
            process = System.Diagnostics.Process.Start(start);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new IOException($"removing {path} failed: {Path.GetFileName(program)} could not be started ({ex.Message})", ex);
        }
        using var tool = process ?? throw new IOException($"removing {path} failed: {Path.GetFileName(program)} could not be started");
        var error = tool.StandardError.ReadToEnd();
        tool.WaitForExit();
        return tool.ExitCode == 0 ? null : $"removing {path} failed: {error.Trim()}";
    }

    private static void ValidateName(string value, string what)
    {
        if (!SafeName().IsMatch(value))
        {
            throw new SessionRuntimeException($"{what} '{value}' is not a safe name (letters, digits, '.', '_', '-'; at most 128)");
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\z")]
    private static partial Regex SafeName();

    public async ValueTask DisposeAsync()
    {
        // Sessions are deliberately left running: they outlive the agent and are re-adopted.
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await _stopping.CancelAsync();
        if (_monitor is not null) await _monitor;
        _stopping.Dispose();
    }

    private sealed class ProcessSession(ProcessSessionRecord record, string dir)
    {
        public ProcessSessionRecord Record { get; set; } = record;
        public string Dir { get; } = dir;
        public string RunDir => RunDirOf(Dir);
        public static string RunDirOf(string dir) => Path.Combine(dir, "run");
        /// <summary>Serializes commands and monitor passes on this one session.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);
        /// <summary>The leader when this agent process started it (null for re-adopted sessions).</summary>
        public System.Diagnostics.Process? Leader { get; init; }
        /// <summary>Whether the agent has said it cut this session's log (<see cref="CapLog"/>): it says so once.</summary>
        public bool LogCapped { get; set; }
    }

    private sealed class SessionStartFailure(string message, bool displayInUse) : Exception(message)
    {
        public bool DisplayInUse { get; } = displayInUse;
    }
}
