using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using StreamSpace.Agent.Hosting;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Runtimes.Process;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Runtimes;

/// <summary>The process runtime against real Xvnc and xterm processes, run as root so the unprivileged-user path is used.</summary>
public class ProcessRuntimeTests : IAsyncDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private readonly TestState _state = new();
    private readonly TestLog _log = new();
    private readonly List<ProcessRuntime> _runtimes = [];

    private async Task<ProcessRuntime> NewRuntimeAsync(int maxProcesses = 4096, TimeSpan? startTimeout = null, string? stateFolder = null, string? windowManager = null, string? cgroupRoot = null, string? geometry = null,
        int? firstDisplay = null, int? displayCount = null, string? xvncPath = null, string? socketBase = null, long? logMaxBytes = null,
        TimeProvider? time = null, TimeSpan? monitorInterval = null)
    {
        var options = new AgentOptions
        {
            Geometry = geometry ?? "1280x800",
            CgroupRoot = cgroupRoot ?? "/sys/fs/cgroup",
            StateFolder = stateFolder ?? _state.Folder,
            StopGracePeriod = TimeSpan.FromSeconds(2),
            MonitorInterval = monitorInterval ?? TimeSpan.FromMilliseconds(200),
            SessionMaxProcesses = maxProcesses,
            SessionWindowManager = windowManager,
        };
        if (startTimeout is { } timeout) options.SessionStartTimeout = timeout;
        if (firstDisplay is { } first) options.FirstDisplay = first;
        if (displayCount is { } count) options.DisplayCount = count;
        if (xvncPath is not null) options.XvncPath = xvncPath;
        if (logMaxBytes is { } cap) options.SessionLogMaxBytes = cap;
        var logger = _log.CreateLogger(nameof(ProcessRuntime));
        var runtime = socketBase is null ? new ProcessRuntime(options, logger, time ?? TimeProvider.System) : new ProcessRuntime(options, logger, time ?? TimeProvider.System) { SocketBase = socketBase };
        _runtimes.Add(runtime);
        await runtime.InitializeAsync(TestContext.Current.CancellationToken);
        return runtime;
    }

    private static SessionStartArgs Args(string command = "xterm", bool persistentHome = false, string? id = null, SessionResources? resources = null) => new()
    {
        SessionId = id ?? "alice-xterm-" + Guid.NewGuid().ToString("N")[..6],
        User = "alice",
        Template = "xterm",
        Resources = resources ?? new SessionResources { Cpu = "1", Memory = "1Gi" },
        PersistentHome = persistentHome,
        Launch = new SessionLaunchSpec { ProcessCommand = command, Env = new Dictionary<string, string> { ["GREETING"] = "hi", ["MOZ_HEADLESS"] = "1" } },
    };

    private JsonObject Record(string sessionId) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(_state.Folder, "sessions", sessionId, "session.json")))!.AsObject();

    private static async Task<SessionStatusPayload> NextObservationAsync(ChannelReader<SessionStatusPayload> reader, string sessionId, params string[] states)
    {
        using var timeout = new CancellationTokenSource(Wait);
        while (true)
        {
            var status = await reader.ReadAsync(timeout.Token);
            if (status.SessionId == sessionId && states.Contains(status.State)) return status;
        }
    }

    /// <summary>Runs an X client of the tools package against a session's display, with the session's cookie.</summary>
    private string X(string sessionId, string program, params string[] arguments)
    {
        var record = Record(sessionId);
        var psi = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        psi.Environment["DISPLAY"] = $":{record["display"]!.GetValue<int>()}";
        psi.Environment["XAUTHORITY"] = Path.Combine(_state.Folder, "sessions", sessionId, "run", XAuthority.FileName);
        using var process = System.Diagnostics.Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        process.ExitCode.ShouldBe(0, $"{program}: {process.StandardError.ReadToEnd()}");
        return output;
    }

    /// <summary>The xterm window's size (WxH) on the session's screen, or null while it has none.</summary>
    private string? XtermSize(string sessionId) =>
        X(sessionId, "xwininfo", "-root", "-tree").Split('\n').Where(l => l.Contains("(\"xterm\" \"XTerm\")", StringComparison.Ordinal))
            .Select(l => l.Split(')', 2)[1].Trim().Split('+')[0]).FirstOrDefault();

    [Fact]
    public async Task The_app_fills_the_session_desktop_and_follows_it_when_the_viewer_resizes_it()
    {
        var runtime = await NewRuntimeAsync();
        runtime.WindowManager.ShouldBe(AgentOptions.DefaultWindowManager, "matchbox-window-manager is installed by ./test.sh and ./run.sh");
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Running);

        await TestProcesses.WaitUntilAsync(() => XtermSize(args.SessionId) == "1280x800", Wait, "xterm filling the 1280x800 desktop");
        // What a viewer's SetDesktopSize does to the screen; the window follows.
        X(args.SessionId, "xrandr", "--fb", "1600x900");
        await TestProcesses.WaitUntilAsync(() => XtermSize(args.SessionId) == "1600x900", Wait, "xterm following the desktop to 1600x900");
        // The window manager belongs to the session: it ends with it.
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        TestProcesses.Group(pgid).Select(m => TestProcesses.CommandName(m.Pid)).ShouldContain("matchbox-window");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        TestProcesses.Group(pgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_window_manager_that_is_not_installed_is_named_at_start_and_left_out()
    {
        var runtime = await NewRuntimeAsync(windowManager: "no-such-window-manager --flag");
        runtime.WindowManager.ShouldBe("");
        _log.Contains("'no-such-window-manager', which is not installed here", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();
    }

    [Fact]
    public async Task Without_a_window_manager_the_app_keeps_the_size_it_chooses()
    {
        var runtime = await NewRuntimeAsync(windowManager: "none");
        runtime.WindowManager.ShouldBe("");
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Running);
        await TestProcesses.WaitUntilAsync(() => XtermSize(args.SessionId) is not null, Wait, "an xterm window");
        XtermSize(args.SessionId).ShouldNotBe("1280x800"); // 80x24 characters
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Started_xterm_session_serves_RFB_through_ConnectVnc_as_the_unprivileged_user()
    {
        Environment.IsPrivilegedProcess.ShouldBeTrue("these tests run as root so the user switch is exercised");
        var runtime = await NewRuntimeAsync();
        var args = Args();

        await runtime.StartAsync(args, TestContext.Current.CancellationToken);

        (await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Running)).State.ShouldBe("running");
        runtime.Inventory().ShouldContain(new SessionInventoryItem { SessionId = args.SessionId, State = ObservedStates.Running });
        // The log says where the start's time went, step by step, and the steps add up to no more than the whole.
        var started = _log.Entries.Single(e => e.Message.StartsWith($"Session {args.SessionId} running on display", StringComparison.Ordinal)).Message;
        var phases = System.Text.RegularExpressions.Regex.Match(started,
            @"after (\d+) ms: prepared in (\d+) ms, Xvnc answered (\d+) ms later, the app started (\d+) ms after that$");
        phases.Success.ShouldBeTrue(started);
        int Phase(int i) => int.Parse(phases.Groups[i].Value, System.Globalization.CultureInfo.InvariantCulture);
        (Phase(2) + Phase(3) + Phase(4)).ShouldBeLessThanOrEqualTo(Phase(1));
        Phase(3).ShouldBeGreaterThan(0, "Xvnc takes time to answer");
        await using (var vnc = await runtime.ConnectVncAsync(args.SessionId, TestContext.Current.CancellationToken))
        {
            var banner = new byte[12];
            await vnc.ReadExactlyAsync(banner, TestContext.Current.CancellationToken);
            Encoding.ASCII.GetString(banner).ShouldStartWith("RFB 003.00");
            // Only the stream bridge's copy loop uses it: its completions run on the socket event thread.
            InlineSocketCompletions.IsEnabledOn(vnc.ShouldBeOfType<NetworkStream>().Socket).ShouldBeTrue();
        }

        var record = Record(args.SessionId);
        var pgid = record["pgid"]!.GetValue<int>();
        var members = TestProcesses.Group(pgid);
        var names = members.Select(m => TestProcesses.CommandName(m.Pid)).ToList();
        names.ShouldContain("Xvnc");
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Any(m => TestProcesses.CommandName(m.Pid) == "xterm"), Wait, "xterm in the session group");
        // Alice's own account, not root and not the shared one.
        var (uid, _) = Account(SessionUser.AccountName("streamspace", "alice"));
        uid.ShouldNotBe(0);
        uid.ShouldNotBe(Account("streamspace").Uid);
        TestProcesses.Group(pgid).ShouldAllBe(m => m.Uid == uid);
        // The session leader runs in a session of its own (setsid), so it survives the agent.
        File.ReadAllText($"/proc/{pgid}/stat").Split(' ')[5].ShouldBe(pgid.ToString(System.Globalization.CultureInfo.InvariantCulture));

        // Environment: display set, template env passed, never headless, no agent secrets.
        var appPid = record["app"]!["pid"]!.GetValue<int>();
        var environ = await AppEnvironmentAsync(appPid);
        environ.ShouldContain($":{record["display"]!.GetValue<int>()}".Insert(0, "DISPLAY="));
        environ.ShouldContain("GREETING=hi");
        environ.ShouldNotContain(e => e.StartsWith("MOZ_HEADLESS", StringComparison.Ordinal));
        environ.ShouldNotContain(e => e.StartsWith("STREAMSPACE_AGENT_TOKEN", StringComparison.Ordinal));

        // The VNC socket is 0600 in a 0700 folder of the session user: nobody else can reach it.
        var socket = record["socketPath"]!.GetValue<string>();
        File.GetUnixFileMode(socket).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.GetUnixFileMode(Path.GetDirectoryName(socket)!).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // Short enough for a unix socket address (107 bytes) however deep the state folder is.
        socket.Length.ShouldBeLessThan(100);
        // Output goes to the session's log file, not to the agent.
        File.ReadAllText(Path.Combine(_state.Folder, "sessions", args.SessionId, "run", "session.log")).ShouldContain("Listening for VNC connections");

        // Starting again is idempotent.
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        runtime.Inventory().Count.ShouldBe(1);

        var home = record["homePath"]!.GetValue<string>();
        Directory.Exists(home).ShouldBeTrue();
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);

        TestProcesses.Group(pgid).ShouldBeEmpty();
        runtime.Inventory().ShouldBeEmpty();
        Directory.Exists(home).ShouldBeFalse("a temporary home is removed on stop");
        (await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Stopped)).State.ShouldBe("stopped");
        // Stopping an unknown session succeeds.
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    /// <summary>
    /// The environment of the session's app process. /proc shows none while that process is inside its exec (the shell
    /// the leader forked running /bin/sh -c, which execs the app's command; the kernel sets the new image's environment up
    /// as part of the exec), so an empty one is read again, for up to 10 s. Seen empty once in a full run under load.
    /// </summary>
    private static async Task<string[]> AppEnvironmentAsync(int appPid)
    {
        var environ = "";
        for (var until = DateTime.UtcNow.AddSeconds(10); environ.Length == 0 && DateTime.UtcNow < until; await Task.Delay(50, TestContext.Current.CancellationToken))
            environ = await File.ReadAllTextAsync($"/proc/{appPid}/environ", TestContext.Current.CancellationToken);
        return environ.Split('\0');
    }

    [Fact]
    public async Task The_sessions_display_admits_only_programs_holding_its_cookie()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var record = Record(args.SessionId);
        var display = $":{record["display"]!.GetValue<int>()}";
        var xauthority = Path.Combine(_state.Folder, "sessions", args.SessionId, "run", XAuthority.FileName);
        File.GetUnixFileMode(xauthority).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var appPid = record["app"]!["pid"]!.GetValue<int>();
        (await AppEnvironmentAsync(appPid)).ShouldContain($"XAUTHORITY={xauthority}");

        // With the session's cookie (as the session user, like its app) the X server answers; without it nobody gets
        // in, not even root, although X access is by socket and every local user can reach the socket.
        (await XdpyinfoAsync(display, xauthority, AsAccount(SessionUser.AccountName("streamspace", "alice"))))
            .ShouldBe(0, "the session user with the cookie");
        (await XdpyinfoAsync(display, "/nonexistent", [])).ShouldNotBe(0, "root without the cookie");
        (await XdpyinfoAsync(display, "/nonexistent", ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]))
            .ShouldNotBe(0, "another user without the cookie");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Sessions_of_different_users_run_as_different_accounts_that_cannot_reach_each_other()
    {
        var runtime = await NewRuntimeAsync();
        var alice = Args(persistentHome: true);
        var bob = Args(persistentHome: true) with { SessionId = "bob-xterm-" + Guid.NewGuid().ToString("N")[..6], User = "bob" };
        await runtime.StartAsync(alice, TestContext.Current.CancellationToken);
        await runtime.StartAsync(bob, TestContext.Current.CancellationToken);
        var aliceAccount = SessionUser.AccountName("streamspace", "alice");
        var bobAccount = SessionUser.AccountName("streamspace", "bob");
        int Pgid(SessionStartArgs args) => Record(args.SessionId)["pgid"]!.GetValue<int>();
        TestProcesses.Group(Pgid(alice)).ShouldAllBe(m => m.Uid == Account(aliceAccount).Uid);
        TestProcesses.Group(Pgid(bob)).ShouldAllBe(m => m.Uid == Account(bobAccount).Uid);
        Account(aliceAccount).Uid.ShouldNotBe(Account(bobAccount).Uid);

        // Bob's programs can neither read Alice's X cookie or home nor open her display without the cookie.
        var aliceCookie = Path.Combine(_state.Folder, "sessions", alice.SessionId, "run", XAuthority.FileName);
        var aliceHome = Path.Combine(_state.Folder, "homes", "alice");
        (await RunAsync([.. AsAccount(bobAccount), "/bin/cat", aliceCookie])).ShouldNotBe(0, "bob reads alice's cookie");
        (await RunAsync([.. AsAccount(bobAccount), "/bin/ls", aliceHome])).ShouldNotBe(0, "bob lists alice's home");
        (await RunAsync([.. AsAccount(aliceAccount), "/bin/ls", aliceHome])).ShouldBe(0, "alice lists her home");
        // Her session id is no secret (ps shows it on her Xvnc's command line), but her session's record is the agent's.
        var aliceRecord = Path.Combine(_state.Folder, "sessions", alice.SessionId, ProcessSessionRecord.FileName);
        (await RunAsync([.. AsAccount(bobAccount), "/bin/cat", aliceRecord])).ShouldNotBe(0, "bob reads alice's session record");
        var aliceDisplay = $":{Record(alice.SessionId)["display"]!.GetValue<int>()}";
        (await XdpyinfoAsync(aliceDisplay, "/nonexistent", AsAccount(bobAccount))).ShouldNotBe(0, "bob opens alice's display");
        await runtime.StopAsync(alice.SessionId, TestContext.Current.CancellationToken);
        await runtime.StopAsync(bob.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_persistent_home_of_the_shared_account_becomes_the_owners_without_following_links()
    {
        var runtime = await NewRuntimeAsync();
        // A home made while sessions ran as the shared account, with a link to a file of root's inside.
        var home = Path.Combine(_state.Folder, "homes", "carol");
        Directory.CreateDirectory(Path.Combine(home, ".config"));
        await File.WriteAllTextAsync(Path.Combine(home, ".config", "settings"), "x", TestContext.Current.CancellationToken);
        var rootFile = Path.Combine(_state.Folder, "root-owned");
        await File.WriteAllTextAsync(rootFile, "secret", TestContext.Current.CancellationToken);
        File.CreateSymbolicLink(Path.Combine(home, "link"), rootFile);
        (await RunAsync(["/bin/chown", "-R", "-h", "streamspace:streamspace", home])).ShouldBe(0);

        var args = Args(persistentHome: true) with { SessionId = "carol-xterm-" + Guid.NewGuid().ToString("N")[..6], User = "carol" };
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var carol = Account(SessionUser.AccountName("streamspace", "carol"));
        foreach (var path in new[] { home, Path.Combine(home, ".config"), Path.Combine(home, ".config", "settings"), Path.Combine(home, "link") })
            (await OwnerAsync(path)).ShouldBe($"{carol.Uid}:{carol.Gid}", path);
        (await OwnerAsync(rootFile)).ShouldBe("0:0", "the link's target is never handed over");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_user_made_again_under_a_deleted_users_name_gets_a_new_account_and_an_empty_home()
    {
        var runtime = await NewRuntimeAsync();
        string[] ids = [Guid.NewGuid().ToString("N"), Guid.NewGuid().ToString("N")];
        SessionStartArgs DaveArgs(string userId, string command) =>
            Args(command, persistentHome: true) with { SessionId = "dave-xterm-" + Guid.NewGuid().ToString("N")[..6], User = "dave", UserId = userId };
        var first = DaveArgs(ids[0], "echo secret > \"$HOME/old-secret\"; exec xterm");
        await runtime.StartAsync(first, TestContext.Current.CancellationToken);
        var firstHome = Record(first.SessionId)["homePath"]!.GetValue<string>();
        firstHome.ShouldBe(Path.Combine(_state.Folder, "homes", "id." + ids[0]));
        await TestProcesses.WaitUntilAsync(() => File.Exists(Path.Combine(firstHome, "old-secret")), Wait, "the first dave's file");
        await runtime.StopAsync(first.SessionId, TestContext.Current.CancellationToken);

        // The admin deleted that dave and made another user named dave: same name, new user id.
        var second = DaveArgs(ids[1], "exec xterm");
        await runtime.StartAsync(second, TestContext.Current.CancellationToken);
        var secondHome = Record(second.SessionId)["homePath"]!.GetValue<string>();
        secondHome.ShouldBe(Path.Combine(_state.Folder, "homes", "id." + ids[1]));
        Directory.EnumerateFileSystemEntries(secondHome).ShouldBeEmpty();
        var firstAccount = SessionUser.AccountName("streamspace", "id." + ids[0]);
        var secondAccount = SessionUser.AccountName("streamspace", "id." + ids[1]);
        var pgid = Record(second.SessionId)["pgid"]!.GetValue<int>();
        TestProcesses.Group(pgid).ShouldAllBe(m => m.Uid == Account(secondAccount).Uid);
        Account(secondAccount).Uid.ShouldNotBe(Account(firstAccount).Uid);
        (await RunAsync([.. AsAccount(secondAccount), "/bin/cat", Path.Combine(firstHome, "old-secret")])).ShouldNotBe(0, "the new dave reads the old one's file");
        (await RunAsync([.. AsAccount(secondAccount), "/bin/ls", firstHome])).ShouldNotBe(0, "the new dave lists the old one's home");
        await runtime.StopAsync(second.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_home_kept_by_username_moves_to_its_owners_user_id()
    {
        var runtime = await NewRuntimeAsync();
        // A home an agent made before homes were kept by user id.
        var legacy = Path.Combine(_state.Folder, "homes", "erin");
        Directory.CreateDirectory(Path.Combine(legacy, ".config"));
        await File.WriteAllTextAsync(Path.Combine(legacy, ".config", "settings"), "kept", TestContext.Current.CancellationToken);
        var userId = Guid.NewGuid().ToString("N");

        // Erin was created before that home was last changed: it is hers.
        var args = Args(persistentHome: true) with
        {
            SessionId = "erin-xterm-" + Guid.NewGuid().ToString("N")[..6], User = "erin", UserId = userId, UserCreatedAt = DateTimeOffset.UtcNow.AddHours(-1),
        };
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var home = Path.Combine(_state.Folder, "homes", "id." + userId);
        Record(args.SessionId)["homePath"]!.GetValue<string>().ShouldBe(home);
        Directory.Exists(legacy).ShouldBeFalse();
        (await File.ReadAllTextAsync(Path.Combine(home, ".config", "settings"), TestContext.Current.CancellationToken)).ShouldBe("kept");
        var erin = Account(SessionUser.AccountName("streamspace", "id." + userId));
        (await OwnerAsync(Path.Combine(home, ".config", "settings"))).ShouldBe($"{erin.Uid}:{erin.Gid}");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);

        // A home last changed before its user was created belonged to an earlier user of that name (deleted, the name
        // given again); without the creation time (an older control plane) the agent cannot tell. Either way it stays.
        foreach (var (name, createdAt) in new (string, DateTimeOffset?)[] { ("fay", DateTimeOffset.UtcNow.AddDays(-1)), ("gus", null) })
        {
            var earlier = Path.Combine(_state.Folder, "homes", name);
            Directory.CreateDirectory(Path.Combine(earlier, ".config"));
            await File.WriteAllTextAsync(Path.Combine(earlier, ".config", "settings"), "the earlier user's", TestContext.Current.CancellationToken);
            Directory.SetLastWriteTimeUtc(earlier, DateTime.UtcNow.AddDays(-2));
            var newcomer = Args(persistentHome: true) with
            {
                SessionId = name + "-xterm-" + Guid.NewGuid().ToString("N")[..6], User = name, UserId = Guid.NewGuid().ToString("N"), UserCreatedAt = createdAt,
            };
            await runtime.StartAsync(newcomer, TestContext.Current.CancellationToken);
            var newHome = Path.Combine(_state.Folder, "homes", "id." + newcomer.UserId);
            Record(newcomer.SessionId)["homePath"]!.GetValue<string>().ShouldBe(newHome, name);
            Directory.EnumerateFileSystemEntries(newHome).ShouldBeEmpty(name);
            File.Exists(Path.Combine(earlier, ".config", "settings")).ShouldBeTrue(name);
            _log.Contains($"The persistent home {earlier}, kept by username by an older agent, is left where it is", Microsoft.Extensions.Logging.LogLevel.Warning)
                .ShouldBeTrue(name);
            await runtime.StopAsync(newcomer.SessionId, TestContext.Current.CancellationToken);
        }
    }

    private static (int Uid, int Gid) Account(string name)
    {
        var fields = File.ReadAllLines("/etc/passwd").Single(l => l.StartsWith(name + ":", StringComparison.Ordinal)).Split(':');
        return (int.Parse(fields[2], System.Globalization.CultureInfo.InvariantCulture), int.Parse(fields[3], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static string[] AsAccount(string name)
    {
        var (uid, gid) = Account(name);
        return ["/usr/bin/setpriv", $"--reuid={uid}", $"--regid={gid}", "--clear-groups", "--"];
    }

    private static async Task<string> OwnerAsync(string path) => (await RunWithOutputAsync(["/usr/bin/stat", "-c", "%u:%g", path])).Output.Trim();

    private static async Task<int> RunAsync(string[] command) => (await RunWithOutputAsync(command)).ExitCode;

    /// <summary>xdpyinfo on the display with only this Xauthority file to go by (a clean environment), as the given user.</summary>
    private static async Task<int> XdpyinfoAsync(string display, string xauthority, string[] asUser) =>
        (await RunWithOutputAsync([.. asUser, "/usr/bin/xdpyinfo", "-display", display],
            new Dictionary<string, string> { ["PATH"] = "/usr/bin:/bin", ["XAUTHORITY"] = xauthority })).ExitCode;

    /// <param name="environment">The whole environment of the command; null: this process's.</param>
    private static async Task<(int ExitCode, string Output)> RunWithOutputAsync(string[] command, Dictionary<string, string>? environment = null)
    {
        var start = new System.Diagnostics.ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in command[1..]) start.ArgumentList.Add(arg);
        if (environment is not null)
        {
            start.Environment.Clear();
            foreach (var (key, value) in environment) start.Environment[key] = value;
        }
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var error = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Wait, TestContext.Current.CancellationToken);
        await error;
        return (process.ExitCode, await output);
    }

    /// <summary>Starts an xterm session of a new user id with a persistent home and waits until it wrote to that home.</summary>
    private async Task<(SessionStartArgs Args, string Home)> StartWithHomeAsync(ProcessRuntime runtime, string user)
    {
        var args = Args("touch \"$HOME/was-here\"; exec xterm", persistentHome: true) with
        {
            SessionId = $"{user}-xterm-" + Guid.NewGuid().ToString("N")[..6], User = user, UserId = Guid.NewGuid().ToString("N"),
        };
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var home = Path.Combine(_state.Folder, "homes", "id." + args.UserId);
        await TestProcesses.WaitUntilAsync(() => File.Exists(Path.Combine(home, "was-here")), Wait, "file written in the home");
        return (args, home);
    }

    [Fact]
    public async Task A_deleted_users_home_still_in_use_is_deleted_when_its_session_stops_and_deleting_it_again_succeeds()
    {
        var runtime = await NewRuntimeAsync();
        var (args, home) = await StartWithHomeAsync(runtime, "erin");
        var userId = args.UserId!;
        var neighbour = Path.Combine(_state.Folder, "homes", "id." + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(neighbour);
        File.WriteAllText(Path.Combine(neighbour, "keep"), "another user's");
        var unusedId = Guid.NewGuid().ToString("N");
        var unused = Path.Combine(_state.Folder, "homes", "id." + unusedId);
        Directory.CreateDirectory(Path.Combine(unused, "sub"));
        File.WriteAllText(Path.Combine(unused, "sub", "old"), "a user's whose sessions all ended");

        // Used by no session: deleted at once, and nothing to defer.
        await runtime.DeleteHomeAsync(unusedId, TestContext.Current.CancellationToken);
        Directory.Exists(unused).ShouldBeFalse();
        Directory.Exists(Path.Combine(_state.Folder, "home-deletes")).ShouldBeFalse();

        // Still in use (a session whose stop expired on the control plane, which reconciliation stops next): accepted, and
        // nothing is pulled from under the session's programs until it ends; hibernated the same.
        await runtime.DeleteHomeAsync(userId, TestContext.Current.CancellationToken);
        File.Exists(Path.Combine(home, "was-here")).ShouldBeTrue();
        File.Exists(Path.Combine(_state.Folder, "home-deletes", userId)).ShouldBeTrue("the deferred deletion recorded");
        File.GetUnixFileMode(Path.Combine(_state.Folder, "home-deletes")).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        await runtime.DeleteHomeAsync(userId, TestContext.Current.CancellationToken); // a redelivery: still deferred
        File.Exists(Path.Combine(home, "was-here")).ShouldBeTrue();

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        Directory.Exists(home).ShouldBeFalse("deleted once its last session stopped");
        File.Exists(Path.Combine(_state.Folder, "home-deletes", userId)).ShouldBeFalse();
        await runtime.DeleteHomeAsync(userId, TestContext.Current.CancellationToken); // a redelivery after a restart: idempotent
        await runtime.DeleteHomeAsync(Guid.NewGuid().ToString("N"), TestContext.Current.CancellationToken); // never had one here
        File.ReadAllText(Path.Combine(neighbour, "keep")).ShouldBe("another user's");
        Directory.EnumerateFileSystemEntries(Path.Combine(_state.Folder, "home-deletes")).ShouldBeEmpty();
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.DeleteHomeAsync("../sessions", TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not a safe name");
        Directory.Exists(Path.Combine(_state.Folder, "sessions")).ShouldBeTrue();
    }

    [Fact]
    public async Task A_deferred_home_deletion_is_done_at_the_next_start_when_its_session_ended_while_the_agent_was_away()
    {
        var first = await NewRuntimeAsync();
        var (args, home) = await StartWithHomeAsync(first, "fred");
        var userId = args.UserId!;
        var (kept, _) = await StartWithHomeAsync(first, "gina");
        await first.DeleteHomeAsync(userId, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        _state.KillOnDispose(Record(kept.SessionId)["pgid"]!.GetValue<int>());
        await first.DisposeAsync();
        Directory.Exists(home).ShouldBeTrue("kept while the agent is away");
        TestProcesses.KillGroup(pgid);
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Count == 0, Wait, "the session's processes to die");

        var second = await NewRuntimeAsync();
        Directory.Exists(home).ShouldBeFalse("deleted at start: its session ended while the agent was away");
        File.Exists(Path.Combine(_state.Folder, "home-deletes", userId)).ShouldBeFalse();
        Directory.Exists(Path.Combine(_state.Folder, "homes", "id." + kept.UserId)).ShouldBeTrue("another user's home, in use, kept");
        second.Inventory().Select(s => s.SessionId).ShouldBe([kept.SessionId]);
        await second.StopAsync(kept.SessionId, TestContext.Current.CancellationToken);
        Directory.Exists(Path.Combine(_state.Folder, "homes", "id." + kept.UserId)).ShouldBeTrue("a home without a deletion outlives its session");
    }

    [Fact]
    public async Task A_session_log_over_the_cap_is_emptied_while_the_app_keeps_running_and_writing()
    {
        const long Cap = AgentOptions.MinSessionLogMaxBytes;
        var runtime = await NewRuntimeAsync(logMaxBytes: Cap);
        // Numbered 32 kB lines as fast as the shell forks (its rate depends on the machine's load, so the test waits for
        // an amount written, not for a time): 200 lines are 6.4 MB, a hundred times the cap.
        const int LineBytes = 32_000;
        const int Lines = 200;
        var args = Args($"n=0; while :; do n=$((n+1)); echo \"line $n $(head -c {LineBytes} /dev/zero | tr '\\0' x)\"; sleep 0.01; done");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var log = Path.Combine(_state.Folder, "sessions", args.SessionId, "run", "session.log");

        static List<int> Numbers(string text) => text.Split('\n').Where(l => l.StartsWith("line ", StringComparison.Ordinal))
            .Select(l => l.Split(' ')).Where(p => p.Length == 3 && p[2].Length == LineBytes)
            .Select(p => int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        long largest = 0;
        var text = "";
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            largest = Math.Max(largest, new FileInfo(log).Length);
            text = File.ReadAllText(log);
            if (Numbers(text).DefaultIfEmpty().Max() >= Lines) break; // so the app went on writing into the emptied log
            watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(90), $"the app wrote {Lines} lines (last seen: {Numbers(text).DefaultIfEmpty().Max()})");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        // Bounded: the monitor looks every 200 ms, so the log stays far below the 6.4 MB written (2 MiB leaves the
        // monitor a second and more of delay on a loaded machine even at this output's full rate).
        largest.ShouldBeLessThan(Cap + 2 * 1024 * 1024);
        // The cut writes its line right after emptying the file: a read in between sees no line yet, the next one does.
        for (var attempt = 0; attempt < 50 && !text.Contains("over the agent's cap", StringComparison.Ordinal); attempt++)
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
            text = File.ReadAllText(log);
        }
        text.ShouldContain("over the agent's cap of 65536: what came before was removed");
        runtime.Inventory().Single(i => i.SessionId == args.SessionId).State.ShouldBe(ObservedStates.Running);
        _log.Entries.Count(e => e.Message.Contains($"The log of session {args.SessionId} reached", StringComparison.Ordinal)).ShouldBe(1, "said once per session");

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Persistent_home_is_kept_and_owned_by_the_session_user()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args("touch \"$HOME/was-here\"; exec xterm", persistentHome: true);
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var home = Path.Combine(_state.Folder, "homes", "alice");
        await TestProcesses.WaitUntilAsync(() => File.Exists(Path.Combine(home, "was-here")), Wait, "file written in the home");
        File.GetUnixFileMode(home).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        File.Exists(Path.Combine(home, "was-here")).ShouldBeTrue("a persistent home is kept after stop");
    }

    [Fact]
    public async Task New_runtime_over_the_same_state_re_adopts_running_sessions_and_reports_reused_pids_as_gone()
    {
        var first = await NewRuntimeAsync();
        var kept = Args();
        var reused = Args();
        await first.StartAsync(kept, TestContext.Current.CancellationToken);
        await first.StartAsync(reused, TestContext.Current.CancellationToken);
        var keptPgid = Record(kept.SessionId)["pgid"]!.GetValue<int>();
        var reusedPgid = Record(reused.SessionId)["pgid"]!.GetValue<int>();
        _state.KillOnDispose(reusedPgid);
        await first.DisposeAsync(); // the agent goes away; sessions must not

        TestProcesses.Group(keptPgid).ShouldNotBeEmpty();
        // Simulate pid reuse: same pids, but they no longer belong to the processes we started. Unrelated processes
        // are outside the session's cgroups (whose members the agent does kill: only its launcher puts processes there).
        foreach (var (pid, _, _) in TestProcesses.Group(reusedPgid))
        {
            try
            {
                foreach (var hierarchy in new[] { "memory", "cpu", "pids" })
                    File.WriteAllText($"/sys/fs/cgroup/{hierarchy}/cgroup.procs", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (IOException) when (TestProcesses.Group(reusedPgid).All(m => m.Pid != pid))
            {
                // It ended between the listing and the move (a short-lived helper of the session): nothing to move.
            }
        }
        var record = Record(reused.SessionId);
        foreach (var process in new[] { "leader", "xvnc", "app" })
        {
            record[process]!["startTime"] = record[process]!["startTime"]!.GetValue<long>() + 1;
        }
        File.WriteAllText(Path.Combine(_state.Folder, "sessions", reused.SessionId, "session.json"), record.ToJsonString());

        var second = await NewRuntimeAsync();

        second.Inventory().Select(s => s.SessionId).ShouldBe([kept.SessionId]);
        var gone = await NextObservationAsync(second.Observations, reused.SessionId, ObservedStates.Crashed);
        gone.Reason.ShouldNotBeNullOrWhiteSpace();
        // Processes we cannot prove are ours are never signalled.
        TestProcesses.Group(reusedPgid).ShouldNotBeEmpty();

        await using (var vnc = await second.ConnectVncAsync(kept.SessionId, TestContext.Current.CancellationToken))
        {
            var banner = new byte[12];
            await vnc.ReadExactlyAsync(banner, TestContext.Current.CancellationToken);
            Encoding.ASCII.GetString(banner).ShouldStartWith("RFB ");
        }
        await second.StopAsync(kept.SessionId, TestContext.Current.CancellationToken);
        TestProcesses.Group(keptPgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_session_whose_Xvnc_died_while_the_agent_was_away_leaves_the_X_server_that_took_its_display_alone()
    {
        // A range of its own, away from the :20 on that the other tests use and the 6000s of the planted-files test.
        var display = 12000 + Random.Shared.Next(1000) * 4;
        var first = await NewRuntimeAsync(firstDisplay: display, displayCount: 4);
        var args = Args();
        await first.StartAsync(args, TestContext.Current.CancellationToken);
        Record(args.SessionId)["display"]!.GetValue<int>().ShouldBe(display);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        await first.DisposeAsync();
        // While the agent is away the session dies (its lock and socket stay behind) and another X server takes the number.
        TestProcesses.KillGroup(pgid);
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Count == 0, Wait, "the session's processes to die");
        string[] files = [$"/tmp/.X{display}-lock", $"/tmp/.X11-unix/X{display}"];
        // What the dead Xvnc left is removed first, as another agent reserving the number does (an X server would wait
        // for the lock's pid while it is an unreaped zombie).
        foreach (var path in files) File.Delete(path);
        var other = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("Xvnc",
            [$":{display}", "-rfbport", "-1", "-SecurityTypes", "None", "-nolisten", "tcp"]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        try
        {
            await TestProcesses.WaitUntilAsync(() => File.Exists(files[1]) && File.Exists(files[0]) && File.ReadAllText(files[0]).Trim() == other.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Wait, "the other X server to take the display");

            var second = await NewRuntimeAsync(firstDisplay: display, displayCount: 4);
            await NextObservationAsync(second.Observations, args.SessionId, ObservedStates.Crashed);

            second.Inventory().ShouldBeEmpty();
            files.ShouldAllBe(path => File.Exists(path), "the other X server's lock and socket");
            other.HasExited.ShouldBeFalse();
            // And its display is not given to a new session.
            var next = Args();
            await second.StartAsync(next, TestContext.Current.CancellationToken);
            Record(next.SessionId)["display"]!.GetValue<int>().ShouldNotBe(display);
            await second.StopAsync(next.SessionId, TestContext.Current.CancellationToken);
        }
        finally
        {
            other.Kill();
            await other.WaitForExitAsync(TestContext.Current.CancellationToken);
            other.Dispose();
        }
    }

    [Fact]
    public async Task A_session_record_an_older_agent_left_readable_becomes_private_when_re_adopted()
    {
        var first = await NewRuntimeAsync();
        var args = Args();
        await first.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        _state.KillOnDispose(pgid);
        await first.DisposeAsync();
        // What agents before records were private wrote (the default umask).
        var record = Path.Combine(_state.Folder, "sessions", args.SessionId, ProcessSessionRecord.FileName);
        File.SetUnixFileMode(record, (UnixFileMode)Convert.ToInt32("644", 8));

        var second = await NewRuntimeAsync();
        second.Inventory().Select(s => s.SessionId).ShouldBe([args.SessionId]);
        File.GetUnixFileMode(record).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        (await RunAsync(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/cat", record])).ShouldNotBe(0, "another account reads the record");
        await second.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Killed_session_is_reported_crashed_by_the_monitor()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var xvnc = Record(args.SessionId)["xvnc"]!["pid"]!.GetValue<int>();

        using (var kill = System.Diagnostics.Process.Start("kill", ["-KILL", xvnc.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
        }

        var status = await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Crashed, ObservedStates.Exited);
        status.State.ShouldBe(ObservedStates.Crashed);
        status.Reason!.ShouldContain("Xvnc");
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_session_whose_record_cannot_be_deleted_is_still_reported_ended_and_so_is_another_in_the_same_pass()
    {
        var runtime = await NewRuntimeAsync();
        var stuck = Args();
        var other = Args();
        await runtime.StartAsync(stuck, TestContext.Current.CancellationToken);
        await runtime.StartAsync(other, TestContext.Current.CancellationToken);
        var xvncs = new[] { stuck, other }.Select(a => Record(a.SessionId)["xvnc"]!["pid"]!.GetValue<int>()).ToList();
        // The record cannot be deleted: a non-empty folder stands in its place (as for a state folder gone read-only).
        var record = Path.Combine(_state.Folder, "sessions", stuck.SessionId, ProcessSessionRecord.FileName);
        _state.KillOnDispose(Record(stuck.SessionId)["pgid"]!.GetValue<int>());
        File.Delete(record);
        Directory.CreateDirectory(record);
        File.WriteAllText(Path.Combine(record, "keep"), "");

        // Their apps lose the display with it: each session ends crashed (Xvnc gone) or exited (the app), whichever the monitor sees first.
        foreach (var xvnc in xvncs) Posix.Signal(xvnc, Posix.SIGKILL);

        var ended = new Dictionary<string, SessionStatusPayload>();
        using (var timeout = new CancellationTokenSource(Wait))
        {
            while (ended.Count < 2)
            {
                var status = await runtime.Observations.ReadAsync(timeout.Token);
                if (status.State is ObservedStates.Crashed or ObservedStates.Exited) ended[status.SessionId] = status;
            }
        }
        ended.Keys.Order(StringComparer.Ordinal).ShouldBe(new[] { stuck.SessionId, other.SessionId }.Order(StringComparer.Ordinal));
        runtime.Inventory().ShouldBeEmpty();
        _log.Contains($"The record of ended session {stuck.SessionId} could not be deleted", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();
        SessionProcesses(stuck.SessionId).ShouldBeEmpty();
    }

    [Fact]
    public async Task Session_user_cannot_make_the_agent_read_or_write_through_its_folder()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var record = Record(args.SessionId);
        var runDir = Path.Combine(_state.Folder, "sessions", args.SessionId, "run");
        // The record is in the agent's folder, not in the session user's run folder.
        File.Exists(Path.Combine(runDir, "session.json")).ShouldBeFalse();
        File.GetUnixFileMode(Path.GetDirectoryName(runDir)!).HasFlag(UnixFileMode.OtherWrite).ShouldBeFalse();

        // A hostile session swaps its log for a link to a file only root may read, then its Xvnc dies.
        var secret = Path.Combine(_state.Folder, "root-only.txt");
        File.WriteAllText(secret, "TOPSECRET-CONTENT");
        File.SetUnixFileMode(secret, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Delete(Path.Combine(runDir, "session.log"));
        File.CreateSymbolicLink(Path.Combine(runDir, "session.log"), secret);
        using (var kill = System.Diagnostics.Process.Start("kill", ["-KILL", record["xvnc"]!["pid"]!.GetValue<int>().ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
        }

        var status = await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Crashed, ObservedStates.Exited);
        status.Reason!.ShouldNotContain("TOPSECRET");
    }

    [Fact]
    public async Task A_vnc_socket_swapped_for_a_link_to_another_socket_is_refused_before_a_byte_moves()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var socketPath = Record(args.SessionId)["socketPath"]!.GetValue<string>();
        // Root's socket the session user must never reach through the agent (think of the system bus or systemd's).
        var rootSocket = Path.Combine(_state.Folder, "root-only.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(rootSocket));
        listener.Listen();
        // The socket's folder is the session user's: they replace their Xvnc's socket with a link.
        File.Delete(socketPath);
        File.CreateSymbolicLink(socketPath, rootSocket);

        var refused = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.ConnectVncAsync(args.SessionId, TestContext.Current.CancellationToken));
        refused.Message.ShouldContain("does not lead to its Xvnc");
        using var accepted = await listener.AcceptAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Wait, TestContext.Current.CancellationToken);
        var buffer = new byte[16];
        (await accepted.ReceiveAsync(buffer, TestContext.Current.CancellationToken).AsTask().WaitAsync(Wait, TestContext.Current.CancellationToken))
            .ShouldBe(0, "the agent hung up without sending anything");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_fifo_for_the_apps_exit_file_stalls_neither_the_monitor_nor_a_stop()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args("sleep 600");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var runDir = Path.Combine(_state.Folder, "sessions", args.SessionId, "run");
        // A hostile session makes its exit file a FIFO nobody writes, then its app ends: the agent reads that file.
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [Path.Combine(runDir, SessionLauncher.AppExitFile)]))
            await mkfifo.WaitForExitAsync(TestContext.Current.CancellationToken);
        Posix.Signal(Record(args.SessionId)["app"]!["pid"]!.GetValue<int>(), Posix.SIGKILL).ShouldBeTrue();

        var other = Args();
        await runtime.StartAsync(other, TestContext.Current.CancellationToken).WaitAsync(Wait, TestContext.Current.CancellationToken);
        await Task.Delay(TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken); // a few monitor passes over the FIFO
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken).WaitAsync(Wait, TestContext.Current.CancellationToken);
        await runtime.StopAsync(other.SessionId, TestContext.Current.CancellationToken).WaitAsync(Wait, TestContext.Current.CancellationToken);
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_process_group_number_given_to_somebody_else_is_never_signalled()
    {
        var first = await NewRuntimeAsync();
        var args = Args();
        await first.StartAsync(args, TestContext.Current.CancellationToken);
        var ownPgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        await first.DisposeAsync();
        // Somebody else's process group, standing for the session's group number after the kernel reused it (the
        // session's processes left their group and it emptied): the record names it, no recorded process is in it.
        using var foreign = System.Diagnostics.Process.Start("/usr/bin/setsid", ["/bin/sleep", "600"])!;
        _state.KillOnDispose(foreign.Id);
        await TestProcesses.WaitUntilAsync(() => ProcFs.Stat(foreign.Id) is { } stat && stat.Pgid == foreign.Id, Wait, "the foreign group");
        var record = Record(args.SessionId);
        record["pgid"] = foreign.Id;
        File.WriteAllText(Path.Combine(_state.Folder, "sessions", args.SessionId, "session.json"), record.ToJsonString());

        var second = await NewRuntimeAsync();
        await second.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        ProcFs.Stat(foreign.Id)!.Value.State.ShouldNotBe('T', "the foreign group was stopped");
        await second.WakeAsync(args.SessionId, TestContext.Current.CancellationToken);
        await second.StopAsync(args.SessionId, TestContext.Current.CancellationToken);

        foreign.HasExited.ShouldBeFalse("the foreign group was killed");
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(ownPgid).Count == 0, Wait, "the session's own processes ended one by one");
    }

    [Fact]
    public async Task A_late_launch_signal_does_not_pass_for_the_apps_exit()
    {
        // The agent signals the leader once the launch file is there. When the leader saw the file first and already waits
        // for the app, that signal must not end the wait as if the app had ended.
        var runtime = await NewRuntimeAsync();
        var args = Args("sh -c 'sleep 1; exit 3'");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Posix.Signal(Record(args.SessionId)["pgid"]!.GetValue<int>(), SessionLauncher.LaunchSignal).ShouldBeTrue();

        var status = await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Crashed, ObservedStates.Exited);

        status.Reason.ShouldBe("app exited with code 3");
        clock.Elapsed.ShouldBeGreaterThan(TimeSpan.FromMilliseconds(500), "the app sleeps 1 s before it exits");
    }

    [Fact]
    public async Task App_that_ends_by_itself_is_reported_exited()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args("sleep 1");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();

        var status = await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Crashed, ObservedStates.Exited);

        status.State.ShouldBe(ObservedStates.Exited);
        status.Reason.ShouldBe("app exited with code 0");
        runtime.Inventory().ShouldBeEmpty();
        // The rest of the session (Xvnc) is cleaned up with it.
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Count == 0, Wait, "the session group to be gone");
    }

    [Fact]
    public async Task A_command_of_a_yaml_block_ending_in_a_newline_starts_and_a_missing_program_in_one_is_still_named()
    {
        // "command: |" followed by "xterm" is stored as "xterm\n"; the newline once became part of the program's name.
        var runtime = await NewRuntimeAsync();
        var args = Args("xterm\n");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        (await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Running)).State.ShouldBe(ObservedStates.Running);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Any(m => TestProcesses.CommandName(m.Pid) == "xterm"), Wait, "xterm in the session group");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);

        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args("no-such-program --flag\n"), TestContext.Current.CancellationToken)))
            .Message.ShouldBe("'no-such-program' (template 'xterm') is not installed on this agent");
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task An_Xvnc_that_exits_at_once_fails_the_start_at_once_with_its_own_words()
    {
        // A desktop of 99999x99999 pixels is more memory than Xvnc can get: it exits as it starts. The leader has reaped it
        // by the time the agent reads its pid, which once left the start waiting out its whole timeout.
        var runtime = await NewRuntimeAsync(geometry: "99999x99999");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var failure = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args(), TestContext.Current.CancellationToken));
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), "the start timeout is 20 s");
        failure.Message.ShouldContain("Xvnc exited during start");
        failure.Message.ShouldContain("Couldn't add screen");
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task Hibernate_stops_every_process_of_the_session_and_wake_resumes_them()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();

        await runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        // Reported only once every process is stopped (SIGSTOP waits for one in the kernel, state D, to come out).
        // A zombie ('Z', a child that exited before its parent was stopped) has no CPU to stop, and a shell in D waiting for
        // its vfork child, which was stopped before its exec, cannot go on before that child does.
        var members = ProcFs.GroupStates(pgid);
        members.ShouldAllBe(m => m.State == 'T' || m.State == 't' || m.State == 'Z'
            || (m.State == 'D' && members.Any(c => c.Ppid == m.Pid && (c.State == 'T' || c.State == 't'))));
        runtime.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);
        Record(args.SessionId)["state"]!.GetValue<string>().ShouldBe("hibernated");
        (await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Hibernated)).State.ShouldBe("hibernated");

        // A new runtime sees it as hibernated too (the monitor must not mistake stopped for dead).
        var adopted = await NewRuntimeAsync();
        adopted.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);

        await adopted.WakeAsync(args.SessionId, TestContext.Current.CancellationToken);
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).All(m => m.State != 'T'), Wait, "all processes continued");
        adopted.Inventory().Single().State.ShouldBe(ObservedStates.Running);

        // Stop works on a hibernated session as well.
        await adopted.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        await adopted.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        TestProcesses.Group(pgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_hibernate_or_wake_whose_record_cannot_be_saved_fails_with_why_and_leaves_the_session_as_it_was()
    {
        var runtime = await NewRuntimeAsync();
        var args = Args();
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        // The record is written beside and renamed over session.json: a folder in the way of that file fails the save, root or not.
        var temp = Path.Combine(_state.Folder, "sessions", args.SessionId, ProcessSessionRecord.FileName + ".tmp");
        Directory.CreateDirectory(temp);

        var failure = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken));

        failure.Message.ShouldStartWith($"session {args.SessionId} stays running: its record could not be saved: ");
        failure.Message.ShouldContain(temp);
        runtime.Inventory().Single().State.ShouldBe(ObservedStates.Running);
        Record(args.SessionId)["state"]!.GetValue<string>().ShouldBe("running");
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).All(m => m.State is not ('T' or 't')), Wait, "every process of the session continued");

        // The mirror: a wake that cannot be saved leaves the session hibernated, its processes never continued (the record
        // says "running" before any of them runs again).
        Directory.Delete(temp);
        await runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        Directory.CreateDirectory(temp);

        failure = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.WakeAsync(args.SessionId, TestContext.Current.CancellationToken));

        failure.Message.ShouldStartWith($"session {args.SessionId} stays hibernated: its record could not be saved: ");
        runtime.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);
        Record(args.SessionId)["state"]!.GetValue<string>().ShouldBe("hibernated");
        // Stopped as the runtime counts it (ProcFs.IsHeld): a shell caught by the SIGSTOP in a vfork whose child was stopped
        // before its exec waits in the kernel (state D) for as long as that child is stopped, and never shows T.
        await TestProcesses.WaitUntilAsync(() => ProcFs.GroupStates(pgid) is var group && group.All(m => ProcFs.IsHeld(m, group)), Wait,
            "every process of the session still stopped");

        Directory.Delete(temp);
        await runtime.WakeAsync(args.SessionId, TestContext.Current.CancellationToken);
        runtime.Inventory().Single().State.ShouldBe(ObservedStates.Running);
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        TestProcesses.Group(pgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_session_left_stopped_by_an_agent_that_ended_mid_hibernate_is_continued_when_re_adopted()
    {
        var first = await NewRuntimeAsync();
        var args = Args();
        await first.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        var xvnc = Record(args.SessionId)["xvnc"]!["pid"]!.GetValue<int>();
        await first.DisposeAsync();
        // The agent was killed after its SIGSTOP and before its record said "hibernated".
        Posix.SignalGroup(pgid, Posix.SIGSTOP);
        await TestProcesses.WaitUntilAsync(() => ProcFs.Stat(xvnc) is { State: 'T' }, Wait, "Xvnc stopped");

        var second = await NewRuntimeAsync();
        second.Inventory().Single().State.ShouldBe(ObservedStates.Running);
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).All(m => m.State != 'T'), Wait, "every process continued");
        await using (var vnc = await second.ConnectVncAsync(args.SessionId, TestContext.Current.CancellationToken))
        {
            var banner = new byte[12];
            await vnc.ReadExactlyAsync(banner, TestContext.Current.CancellationToken).AsTask().WaitAsync(Wait, TestContext.Current.CancellationToken);
            Encoding.ASCII.GetString(banner).ShouldStartWith("RFB 003.00");
        }
        await second.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Hibernate_counts_a_process_held_by_its_stopped_vfork_child_as_stopped()
    {
        // dash vforks for every command it runs: between the vfork and the child's exec the parent waits in the kernel
        // (state D) and SIGSTOP cannot stop it there. A full test run once stopped such a child before its exec and the
        // hibernate waited 30 s for the shell, then failed. Made deterministic here: posix_spawn vforks and its child
        // opens a FIFO nobody writes to before exec, so the child blocks (S, then T when stopped) and the parent stays D.
        var command = """mkfifo "$HOME/held" && exec python3 -c 'import os; os.posix_spawn("/bin/true", ["true"], dict(os.environ), file_actions=[(os.POSIX_SPAWN_OPEN, 3, os.environ["HOME"] + "/held", os.O_RDONLY, 0)])'""";
        var runtime = await NewRuntimeAsync();
        var args = Args(command);
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        // A parent in D with its child blocked in the FIFO open: the held state, not a passing disk wait of python's
        // start-up (a full test run caught one of those and hibernated before the spawn).
        await TestProcesses.WaitUntilAsync(() =>
        {
            var group = TestProcesses.Group(pgid);
            return group.Any(parent => parent.State == 'D' && group.Any(child => child.State == 'S' && TestProcesses.ParentOf(child.Pid) == parent.Pid));
        }, Wait, "the spawning parent waits for its vfork child");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);

        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), "the held parent counts as stopped at once");
        var group = TestProcesses.Group(pgid);
        group.Count(m => m.State == 'D').ShouldBe(1, "the parent is still held in the kernel, so the scenario was exercised");
        group.ShouldAllBe(m => m.State == 'T' || m.State == 't' || m.State == 'Z' || m.State == 'D');
        runtime.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);

        await runtime.WakeAsync(args.SessionId, TestContext.Current.CancellationToken);
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).All(m => m.State != 'T'), Wait, "all processes continued");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        TestProcesses.Group(pgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task Bad_start_requests_fail_with_a_reason()
    {
        var runtime = await NewRuntimeAsync();
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args(id: "../escape"), TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not a safe name");
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args() with { User = "../../root" }, TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not a safe name");
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args() with { User = "alice\n" }, TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not a safe name");
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args() with { UserId = "../x" }, TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not a safe name");
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args() with { Launch = new SessionLaunchSpec() }, TestContext.Current.CancellationToken)))
            .Message.ShouldContain("no process command");
        await Should.ThrowAsync<SessionRuntimeException>(() => runtime.HibernateAsync("nope", TestContext.Current.CancellationToken));
        runtime.Inventory().ShouldBeEmpty();
    }

    private SessionCgroups Cgroups(string root = "/sys/fs/cgroup") =>
        SessionCgroups.Detect(root, _state.Folder, _log.CreateLogger(nameof(SessionCgroups)), out var unavailable)
        ?? throw new InvalidOperationException($"these tests need cgroup v1 memory and cpu hierarchies: {unavailable}");

    /// <summary>The cgroup paths (one per hierarchy line of /proc/PID/cgroup) a process is in.</summary>
    private static List<string> CgroupsOf(int pid) =>
        [.. File.ReadAllLines($"/proc/{pid}/cgroup").Select(line => line.Split(':', 3)[2])];

    [Fact]
    public async Task Template_cpu_and_memory_become_the_limits_of_a_cgroup_every_session_process_is_in()
    {
        var runtime = await NewRuntimeAsync();
        runtime.SessionLimits.ShouldBe("enforced: a cgroup v1 per session (cpu quota, memory limit including swap, at most 4096 processes)");
        var args = Args("sh -c 'while :; do :; done'", resources: new SessionResources { Cpu = "200m", Memory = "96Mi" });
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var cgroups = Cgroups();
        var memory = cgroups.MemoryDir(args.SessionId);
        var cpu = cgroups.CpuDir(args.SessionId);

        File.ReadAllText(Path.Combine(memory, "memory.limit_in_bytes")).Trim().ShouldBe((96L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        // Swap counts against the same limit (this machine's kernel accounts swap): no spilling past it into the host's swap.
        File.ReadAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes")).Trim().ShouldBe((96L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.ReadAllText(Path.Combine(cpu, "cpu.cfs_period_us")).Trim().ShouldBe("100000");
        File.ReadAllText(Path.Combine(cpu, "cpu.cfs_quota_us")).Trim().ShouldBe("20000");
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        var members = TestProcesses.Group(pgid);
        members.Count.ShouldBeGreaterThanOrEqualTo(3); // leader, Xvnc, the app's shell
        foreach (var (pid, _, _) in members)
        {
            var paths = CgroupsOf(pid);
            paths.ShouldContain(p => memory.EndsWith(p, StringComparison.Ordinal), $"pid {pid} ({TestProcesses.CommandName(pid)}) in the memory cgroup");
            paths.ShouldContain(p => cpu.EndsWith(p, StringComparison.Ordinal), $"pid {pid} ({TestProcesses.CommandName(pid)}) in the cpu cgroup");
        }
        // The kernel holds the busy loop to its 20 ms per 100 ms: it gets throttled.
        await TestProcesses.WaitUntilAsync(() => ThrottledPeriods(cpu) > 0, Wait, "the session's cpu cgroup to be throttled");

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        Directory.Exists(memory).ShouldBeFalse();
        Directory.Exists(cpu).ShouldBeFalse();
    }

    [Fact]
    public async Task Sessions_without_accounts_of_their_own_are_called_out_and_with_them_nothing_is_said()
    {
        // Not root: sessions share the agent's account (SessionUser.Resolve's non-privileged answer).
        var shared = new SessionUser("alice", -1, -1, SwitchUser: false);
        ProcessRuntime.IsolationWarning(shared).ShouldBe(
            "Sessions run as this agent's own account (alice) because the agent is not root: they are not isolated from each other " +
            "nor from the agent (with the embedded agent, nor from the control plane's data folder, whose database holds the token " +
            "signing key). Run the agent as root to give each StreamSpace user's sessions an unprivileged account of their own.");
        // As root (these tests): accounts of their own, no warning logged.
        await NewRuntimeAsync();
        _log.Contains("are not isolated", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeFalse();
        ProcessRuntime.IsolationWarning(new SessionUser("streamspace", 999, 999, SwitchUser: true)).ShouldBeNull();
    }

    [Fact]
    public async Task A_session_user_whose_account_cannot_be_made_is_a_setting_the_agent_cannot_start_with()
    {
        // A valid name that useradd still refuses: a group of that name exists (exit 9) but no account, so none is made.
        var name = "sst" + Guid.NewGuid().ToString("N")[..10];
        (await RunAsync(["groupadd", name])).ShouldBe(0);
        try
        {
            var options = new AgentOptions { StateFolder = _state.Folder, SessionUser = name, SessionUserPerOwner = false };
            options.SessionUserProblem().ShouldBeNull("the name itself is fine");
            await using var runtime = new ProcessRuntime(options, _log.CreateLogger(nameof(ProcessRuntime)), TimeProvider.System);

            var refused = await Should.ThrowAsync<AgentOptionsException>(() => runtime.InitializeAsync(TestContext.Current.CancellationToken));
            refused.Message.ShouldBe($"invalid agent configuration: the session user '{name}' cannot be used (user '{name}' could not be created); STREAMSPACE_SESSION_USER sets it");
        }
        finally
        {
            await RunAsync(["groupdel", name]);
        }
    }

    [Fact]
    public async Task A_state_folder_the_session_accounts_cannot_reach_fails_starts_with_the_folder_to_fix()
    {
        // A data folder made under umask 077: the agent (root) gets in, its sessions' accounts do not.
        var closed = Path.Combine(_state.Folder, "closed");
        var state = Path.Combine(closed, "state");
        Directory.CreateDirectory(state);
        File.SetUnixFileMode(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        try
        {
            var runtime = await NewRuntimeAsync(stateFolder: state);
            var failure = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(Args(), TestContext.Current.CancellationToken));
            failure.Message.ShouldBe($"sessions cannot start on this agent: their accounts cannot reach its state folder {state}, because {closed} is mode 700 " +
                $"(give others search permission: chmod o+x {closed}, or put the state folder elsewhere with STREAMSPACE_AGENT_STATE)");
            _log.Contains("sessions cannot start on this agent", Microsoft.Extensions.Logging.LogLevel.Error).ShouldBeTrue();

            // Fixed while the agent runs: the next start works without a restart.
            File.SetUnixFileMode(closed, File.GetUnixFileMode(closed) | UnixFileMode.OtherExecute);
            var args = Args();
            await runtime.StartAsync(args, TestContext.Current.CancellationToken);
            runtime.Inventory().ShouldContain(s => s.SessionId == args.SessionId);
            await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        }
        finally
        {
            TestState.RemoveCgroupsOf(state);
        }
    }

    [Fact]
    public async Task Xvnc_starts_before_the_cpu_limit_applies_and_the_app_starts_under_it()
    {
        // 10m = 1 ms of CPU per 100 ms: Xvnc (~0.6 s of CPU to start) would need about a minute under it. No window
        // manager: it starts beside the app in the same cgroup, and its own start-up under this quota took the app
        // past the 10 s wait below on a loaded machine (once in three full runs); the quota's order is what is tested here.
        var runtime = await NewRuntimeAsync(startTimeout: TimeSpan.FromSeconds(8), windowManager: "none");
        var args = Args(
            """sh -c 'cat "/sys/fs/cgroup/cpu$(grep :cpu: /proc/self/cgroup | cut -d: -f3)/cpu.cfs_quota_us" > "$HOME/quota-at-start"; while :; do :; done'""",
            resources: new SessionResources { Cpu = "10m", Memory = "1Gi" });
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var cpu = Cgroups().CpuDir(args.SessionId);
        File.ReadAllText(Path.Combine(cpu, "cpu.cfs_quota_us")).Trim().ShouldBe("1000");
        // The app saw the limit from its first instruction on, and its busy loop is held to it.
        var recorded = Path.Combine(Record(args.SessionId)["homePath"]!.GetValue<string>(), "quota-at-start");
        await TestProcesses.WaitUntilAsync(() => File.Exists(recorded) && File.ReadAllText(recorded).Length > 0, Wait, "the app to record its quota");
        File.ReadAllText(recorded).Trim().ShouldBe("1000");
        await TestProcesses.WaitUntilAsync(() => ThrottledPeriods(cpu) > 0, Wait, "the app to be throttled");
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_cpu_request_below_the_kernels_smallest_quota_gets_that_quota()
    {
        var cgroups = Cgroups();
        var id = "tiny-" + Guid.NewGuid().ToString("N")[..6];
        cgroups.Prepare(id, memoryBytes: 64L << 20, maxProcesses: 100);
        cgroups.LimitCpu(id, cpuMillicores: 5);
        File.ReadAllText(Path.Combine(cgroups.CpuDir(id), "cpu.cfs_quota_us")).Trim().ShouldBe("1000"); // 5m would be 500 µs: EINVAL
        await cgroups.KillAndRemoveAsync(id, TimeProvider.System, TestContext.Current.CancellationToken);
        Directory.Exists(cgroups.CpuDir(id)).ShouldBeFalse();
    }

    [Fact]
    public async Task A_session_can_be_limited_again_to_more_or_less_memory_with_swap_counted_each_time()
    {
        var cgroups = Cgroups();
        cgroups.LimitsSwap.ShouldBeTrue("this machine's kernel accounts swap (memory.memsw.* exists)");
        var id = "relimit-" + Guid.NewGuid().ToString("N")[..6];
        string Read(string file) => File.ReadAllText(Path.Combine(cgroups.MemoryDir(id), file)).Trim();
        // The kernel refuses memory.limit_in_bytes above memory.memsw.limit_in_bytes and the reverse: both directions.
        foreach (var mib in new[] { 64L, 256L, 32L })
        {
            cgroups.Prepare(id, memoryBytes: mib << 20, maxProcesses: 100);
            var bytes = (mib << 20).ToString(System.Globalization.CultureInfo.InvariantCulture);
            Read("memory.limit_in_bytes").ShouldBe(bytes);
            Read("memory.memsw.limit_in_bytes").ShouldBe(bytes);
        }
        await cgroups.KillAndRemoveAsync(id, TimeProvider.System, TestContext.Current.CancellationToken);
        Directory.Exists(cgroups.MemoryDir(id)).ShouldBeFalse();
    }

    private static long ThrottledPeriods(string cpuDir) =>
        long.Parse(File.ReadAllLines(Path.Combine(cpuDir, "cpu.stat")).Single(l => l.StartsWith("nr_throttled ", StringComparison.Ordinal))[13..], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task A_session_cannot_start_more_processes_than_its_limit()
    {
        var runtime = await NewRuntimeAsync(maxProcesses: 40);
        // A small fork bomb: 100 sleepers wanted, the session may hold 40 tasks (Xvnc's threads and the shells count too).
        // The app outlives its refused forks (a shell exits at the first one, which failed the start when that came
        // before the runtime's start checks, as it did once on a fresh machine).
        var args = Args("python3 -c 'import os, time\nfor _ in range(100):\n    try:\n        if os.fork() == 0:\n            time.sleep(600)\n            os._exit(0)\n" +
            "    except OSError:\n        pass\ntime.sleep(600)'");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pids = Cgroups().PidsDir(args.SessionId)!;
        File.ReadAllText(Path.Combine(pids, "pids.max")).Trim().ShouldBe("40");

        await TestProcesses.WaitUntilAsync(() => RefusedForks(pids) > 0, Wait, "a fork to be refused at the limit");
        long.Parse(File.ReadAllText(Path.Combine(pids, "pids.current")).Trim(), System.Globalization.CultureInfo.InvariantCulture).ShouldBeLessThanOrEqualTo(40);

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        Directory.Exists(pids).ShouldBeFalse();
    }

    /// <summary>Forks the kernel refused because the cgroup was at pids.max (the "max" line of pids.events).</summary>
    private static long RefusedForks(string pidsDir) =>
        long.Parse(File.ReadAllLines(Path.Combine(pidsDir, "pids.events")).Single(l => l.StartsWith("max ", StringComparison.Ordinal))[4..], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task An_app_beyond_its_memory_limit_is_killed_and_reported_out_of_memory()
    {
        var runtime = await NewRuntimeAsync();
        // Touches 512 MiB in a session allowed 128 MiB.
        var args = Args("python3 -c 'import time; b = bytearray(512 * 1024 * 1024); time.sleep(600)'", resources: new SessionResources { Cpu = "1", Memory = "128Mi" });
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);

        var status = await NextObservationAsync(runtime.Observations, args.SessionId, ObservedStates.Crashed, ObservedStates.Exited);

        status.State.ShouldBe(ObservedStates.Crashed);
        status.Reason!.ShouldContain("app killed by signal 9");
        status.Reason!.ShouldContain("out of memory");
        Directory.Exists(Cgroups().MemoryDir(args.SessionId)).ShouldBeFalse();
    }

    [Theory]
    [InlineData("4Mi")]
    [InlineData("8Mi")]
    public async Task A_start_killed_by_its_memory_limit_fails_out_of_memory_not_as_an_Xvnc_failure(string memory)
    {
        var runtime = await NewRuntimeAsync();
        // Too little for Xvnc itself: the memory cgroup kills it while the session starts.
        var args = Args(resources: new SessionResources { Cpu = "1", Memory = memory });

        var failure = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(args, TestContext.Current.CancellationToken));

        failure.Message.ShouldStartWith($"out of memory during start: the session reached its template's memory limit ({memory}); ");
        failure.Message.ShouldContain("Xvnc exited during start", Case.Sensitive, "what died of it is still said");
        Directory.Exists(Cgroups().MemoryDir(args.SessionId)).ShouldBeFalse();
        runtime.Inventory().ShouldBeEmpty();
    }

    /// <summary>
    /// Starts a session whose app runs <paramref name="script"/> under setsid, which gives it a session and process
    /// group of its own (signalling the session's group misses it); returns that process's pid.
    /// </summary>
    private async Task<(SessionStartArgs Args, int Escaped)> StartWithEscapedProcessAsync(ProcessRuntime runtime, string script)
    {
        var args = Args($"setsid sh -c 'echo $$ > \"$HOME/escaped.pid\"; {script}' & exec sleep 600");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var pidFile = Path.Combine(Record(args.SessionId)["homePath"]!.GetValue<string>(), "escaped.pid");
        await TestProcesses.WaitUntilAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).EndsWith('\n'), Wait, "the escaped process to write its pid");
        return (args, int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Stop_also_kills_a_process_that_left_the_sessions_process_group()
    {
        var runtime = await NewRuntimeAsync();
        var (args, escaped) = await StartWithEscapedProcessAsync(runtime, "exec sleep 600");
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        TestProcesses.Group(pgid).ShouldNotContain(m => m.Pid == escaped);
        Directory.Exists($"/proc/{escaped}").ShouldBeTrue();

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);

        await WaitUntilKilledAsync(escaped);
    }

    [Fact]
    public async Task Hibernate_also_stops_a_process_that_left_the_sessions_process_group()
    {
        var runtime = await NewRuntimeAsync();
        var (args, escaped) = await StartWithEscapedProcessAsync(runtime, "while :; do :; done");
        await HibernateAndWakeStopAndContinueAsync(runtime, args, escaped);
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    /// <summary>Hibernates and wakes the session: <paramref name="escaped"/>, a busy loop that left its process group, stops and continues with it.</summary>
    private static async Task HibernateAndWakeStopAndContinueAsync(ProcessRuntime runtime, SessionStartArgs args, int escaped)
    {
        char State() => File.ReadAllText($"/proc/{escaped}/stat").Split(") ")[1][0];
        await runtime.HibernateAsync(args.SessionId, TestContext.Current.CancellationToken);
        State().ShouldBe('T', "the busy loop that left the process group is stopped with the session");
        await runtime.WakeAsync(args.SessionId, TestContext.Current.CancellationToken);
        await TestProcesses.WaitUntilAsync(() => State() != 'T', Wait, "the escaped process to continue");
    }

    /// <summary>Waits until <paramref name="pid"/> is gone or a zombie.</summary>
    private static Task WaitUntilKilledAsync(int pid) =>
        TestProcesses.WaitUntilAsync(() => !Directory.Exists($"/proc/{pid}") || File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal),
            Wait, "the escaped process to be killed");

    [Fact]
    public async Task Limits_are_off_with_a_reason_without_any_cgroup_hierarchy_and_when_turned_off()
    {
        var root = Path.Combine(_state.Folder, "no-cgroups");
        Directory.CreateDirectory(root);
        SessionCgroups.Detect(root, _state.Folder, _log.CreateLogger(nameof(SessionCgroups)), out var unavailable).ShouldBeNull();
        unavailable.ShouldBe($"no cgroup v1 memory and cpu hierarchies and no cgroup v2 hierarchy under {root}");

        var options = new AgentOptions { StateFolder = _state.Folder, SessionLimits = false, StopGracePeriod = TimeSpan.FromSeconds(2) };
        var runtime = new ProcessRuntime(options, _log.CreateLogger(nameof(ProcessRuntime)), TimeProvider.System);
        _runtimes.Add(runtime);
        await runtime.InitializeAsync(TestContext.Current.CancellationToken);
        runtime.SessionLimits.ShouldBe("not enforced: turned off (STREAMSPACE_SESSION_LIMITS=false)");
        var args = Args("sleep 600");
        await runtime.StartAsync(args, TestContext.Current.CancellationToken);
        Directory.Exists(Cgroups().MemoryDir(args.SessionId)).ShouldBeFalse();
        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
    }

    [Fact]
    public void Cgroup_v2_limits_are_written_as_the_kernel_documents_them_checked_on_a_fake_cgroupfs()
    {
        // A fake: this machine's cpu, memory and pids controllers are bound to its cgroup v1 hierarchies, so no cgroup v2
        // hierarchy here can offer them. The files are checked on a folder shaped like one (the kernel's cgroup-v2 interface
        // files); what the real v2 hierarchy here can do (hold a session, kill it, stop it) is tested below.
        var log = _log.CreateLogger(nameof(SessionCgroups));
        string FakeRoot(string name, string controllers)
        {
            var root = Path.Combine(_state.Folder, name);
            Directory.CreateDirectory(root);
            File.WriteAllText(Path.Combine(root, "cgroup.controllers"), controllers + "\n");
            return root;
        }
        static string Read(string dir, string file) => File.ReadAllText(Path.Combine(dir, file)).Trim();

        var root = FakeRoot("fake-cgroup2", "cpuset cpu io memory hugetlb pids rdma misc");
        var cgroups = SessionCgroups.Detect(root, _state.Folder, log, out var unavailable).ShouldNotBeNull();
        unavailable.ShouldBeNull();
        var parent = Path.GetDirectoryName(cgroups.MemoryDir("x"))!;
        Path.GetDirectoryName(parent).ShouldBe(Path.Combine(root, "streamspace"));
        // The controllers are handed down at every level from the root to the agent's parent.
        foreach (var level in new[] { root, Path.Combine(root, "streamspace"), parent }) Read(level, "cgroup.subtree_control").ShouldBe("+cpu +memory +pids");
        cgroups.Describe(4096).ShouldBe("enforced: a cgroup v2 per session (cpu quota, memory limit (swap not limited: the kernel does not account it), at most 4096 processes)");
        // Where the kernel accounts swap, memory.swap.max is in every cgroup that has memory.
        File.WriteAllText(Path.Combine(parent, "memory.swap.max"), "max\n");
        cgroups = SessionCgroups.Detect(root, _state.Folder, log, out _).ShouldNotBeNull();
        cgroups.LimitsSwap.ShouldBeTrue();
        cgroups.Describe(4096).ShouldBe("enforced: a cgroup v2 per session (cpu quota, memory limit with no swap, at most 4096 processes)");

        var dir = Path.Combine(parent, "s1");
        cgroups.Prepare("s1", memoryBytes: 96L << 20, maxProcesses: 40).ShouldBe([Path.Combine(dir, "cgroup.procs")]);
        (cgroups.MemoryDir("s1"), cgroups.CpuDir("s1"), cgroups.PidsDir("s1")).ShouldBe((dir, dir, dir));
        Read(dir, "memory.max").ShouldBe((96L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        Read(dir, "memory.swap.max").ShouldBe("0");
        Read(dir, "cpu.max").ShouldBe("max 100000"); // Xvnc starts unthrottled
        Read(dir, "pids.max").ShouldBe("40");
        cgroups.LimitCpu("s1", cpuMillicores: 200);
        Read(dir, "cpu.max").ShouldBe("20000 100000");
        cgroups.LimitCpu("s1", cpuMillicores: 5);
        Read(dir, "cpu.max").ShouldBe("1000 100000"); // the kernel's smallest quota
        cgroups.HitMemoryLimit("s1").ShouldBeFalse();
        File.WriteAllText(Path.Combine(dir, "memory.events"), "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n");
        cgroups.HitMemoryLimit("s1").ShouldBeTrue();

        // No pids controller offered: no process limit.
        var withoutPids = SessionCgroups.Detect(FakeRoot("fake-cgroup2-no-pids", "cpu memory"), _state.Folder, log, out _).ShouldNotBeNull();
        withoutPids.Describe(4096).ShouldEndWith("no pids controller, so no process limit)");
        withoutPids.PidsDir("s1").ShouldBeNull();

        // Controllers that cannot be handed down (on a host: a cgroup holding processes; here a folder where the file would be):
        // the sessions are still held in cgroups, without limits, and the reason says what to change.
        var refusing = FakeRoot("fake-cgroup2-refusing", "cpu memory pids");
        Directory.CreateDirectory(Path.Combine(refusing, "cgroup.subtree_control"));
        var held = SessionCgroups.Detect(refusing, _state.Folder, log, out unavailable).ShouldNotBeNull();
        unavailable.ShouldStartWith($"cannot hand the cpu and memory controllers down from {refusing} (");
        unavailable.ShouldEndWith("; each session still gets a cgroup of its own, so a stop reaches every process it started");
        held.Prepare("s2", memoryBytes: 96L << 20, maxProcesses: 40).ShouldBe([Path.Combine(Path.GetDirectoryName(held.MemoryDir("s2"))!, "s2", "cgroup.procs")]);
        Directory.GetFiles(held.MemoryDir("s2")).ShouldBeEmpty("no limits are written");
        held.LimitCpu("s2", cpuMillicores: 200);
        Directory.GetFiles(held.CpuDir("s2")).ShouldBeEmpty();
    }

    [Fact]
    public async Task On_this_machines_cgroup_v2_hierarchy_without_controllers_a_session_is_held_in_a_cgroup_but_not_limited()
    {
        // This machine mounts a cgroup v2 hierarchy beside its v1 ones (a hybrid host), every controller bound to v1: a
        // real v2 cgroup that can hold, freeze-by-signal and kill a session's processes, but not limit them.
        const string root = "/sys/fs/cgroup/unified";
        File.Exists(Path.Combine(root, "cgroup.controllers")).ShouldBeTrue($"this machine mounts a cgroup v2 hierarchy at {root}");
        var runtime = await NewRuntimeAsync(cgroupRoot: root);
        runtime.SessionLimits.ShouldStartWith($"not enforced: the cgroup v2 hierarchy at {root} does not offer the cpu and memory controllers (its cgroup.controllers: ");
        runtime.SessionLimits.ShouldEndWith("so a stop reaches every process it started");
        _log.Contains("Session cpu and memory limits are not enforced on this agent", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();

        var (args, escaped) = await StartWithEscapedProcessAsync(runtime, "while :; do :; done");
        var dir = Cgroups(root).MemoryDir(args.SessionId);
        Directory.GetFiles(dir).ShouldNotContain(f => f.EndsWith("memory.max", StringComparison.Ordinal));
        // Every process of the session is in its v2 cgroup, the one that left the process group too.
        string V2PathOf(int pid) => File.ReadAllLines($"/proc/{pid}/cgroup").Single(l => l.StartsWith("0::", StringComparison.Ordinal))[3..];
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        foreach (var pid in TestProcesses.Group(pgid).Select(m => m.Pid).Append(escaped))
            (root + V2PathOf(pid)).ShouldBe(dir, $"pid {pid} ({TestProcesses.CommandName(pid)})");

        await HibernateAndWakeStopAndContinueAsync(runtime, args, escaped);

        await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        await WaitUntilKilledAsync(escaped);
        Directory.Exists(dir).ShouldBeFalse();
    }

    [Fact]
    public async Task Lock_and_socket_files_another_account_made_for_every_display_hold_none_of_them()
    {
        // A range of its own, away from the :20 on that the other tests (and other agents on this machine) use.
        var first = 6000 + Random.Shared.Next(1000) * 4;
        const int count = 4;
        var runtime = await NewRuntimeAsync(firstDisplay: first, displayCount: count);
        var planted = Enumerable.Range(first, count).SelectMany(n => new[] { $"/tmp/.X11-unix/X{n}", $"/tmp/.X{n}-lock" }).ToList();
        try
        {
            // What any session user's shell can do: /tmp and /tmp/.X11-unix are 1777, and pid 1 always lives.
            (await RunAsync(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c",
                $"for n in $(seq {first} {first + count - 1}); do touch /tmp/.X11-unix/X$n && echo 1 > /tmp/.X$n-lock || exit 1; done"])).ShouldBe(0);
            planted.ShouldAllBe(path => File.Exists(path));

            var args = Args();
            await runtime.StartAsync(args, TestContext.Current.CancellationToken);

            Record(args.SessionId)["display"]!.GetValue<int>().ShouldBe(first);
            _log.Contains($"Display :{first} is held by no X server; removed what claimed it: /tmp/.X{first}-lock, /tmp/.X11-unix/X{first}",
                Microsoft.Extensions.Logging.LogLevel.Information).ShouldBeTrue();
            await using (var vnc = await runtime.ConnectVncAsync(args.SessionId, TestContext.Current.CancellationToken))
            {
                var banner = new byte[12];
                await vnc.ReadExactlyAsync(banner, TestContext.Current.CancellationToken);
                Encoding.ASCII.GetString(banner).ShouldStartWith("RFB 003.00");
            }
            await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        }
        finally
        {
            foreach (var path in planted) File.Delete(path);
        }
    }

    /// <summary>
    /// An Xvnc that waits, before it runs the real one, until the test opens it (<see cref="HeldXvnc.Open"/>): the start
    /// stands still at a known point, with its processes, cgroups and folders made.
    /// </summary>
    private sealed class HeldXvnc : IDisposable
    {
        private readonly string _folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "streamspace-agent-tests", "xvnc-" + Guid.NewGuid().ToString("N")[..12]);

        public HeldXvnc()
        {
            Directory.CreateDirectory(_folder);
            File.SetUnixFileMode(_folder, (UnixFileMode)Convert.ToInt32("755", 8));
            File.WriteAllText(Path, $"#!/bin/sh\nwhile [ ! -e {_folder}/open ]; do sleep 0.02; done\nexec Xvnc \"$@\"\n");
            File.SetUnixFileMode(Path, (UnixFileMode)Convert.ToInt32("755", 8));
        }

        public string Path => System.IO.Path.Combine(_folder, "Xvnc");

        public void Open() => File.WriteAllText(System.IO.Path.Combine(_folder, "open"), "");

        public void Dispose() => Directory.Delete(_folder, recursive: true);
    }

    /// <summary>The socket path the held Xvnc of a starting session was given, once the session's leader started it.</summary>
    private async Task<string> HeldXvncSocketAsync(string sessionId)
    {
        var pidFile = Path.Combine(_state.Folder, "sessions", sessionId, "run", SessionLauncher.XvncPidFile);
        string? socket = null;
        await TestProcesses.WaitUntilAsync(() =>
        {
            if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out var pid)) return false;
            var argv = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
            socket = argv.SkipWhile(a => a != "-rfbunixpath").Skip(1).FirstOrDefault();
            return socket is not null;
        }, Wait, "the held Xvnc of the session");
        return socket!;
    }

    /// <summary>Live processes started for a session, by the session id in their environment (every one of them has it).</summary>
    private static List<int> SessionProcesses(string sessionId)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "environ")).Split('\0').Contains($"STREAMSPACE_SESSION_ID={sessionId}")
                    && File.ReadAllText(Path.Combine(dir, "stat")).Split(") ")[1][0] is not ('Z' or 'X'))
                    pids.Add(pid);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // gone meanwhile
            }
        }
        return pids;
    }

    private static async Task<Exception> FailureOfAsync(Task start)
    {
        try
        {
            await start;
        }
        catch (Exception ex)
        {
            return ex;
        }
        throw new ShouldAssertException("the start succeeded");
    }

    /// <summary>Nothing of a failed start is left: no process, cgroup, temporary home or socket folder, and no record.</summary>
    private async Task NothingOfTheStartIsLeftAsync(ProcessRuntime runtime, string sessionId, string socket)
    {
        await TestProcesses.WaitUntilAsync(() => SessionProcesses(sessionId).Count == 0, TimeSpan.FromSeconds(5), "no process of the session");
        var cgroups = Cgroups();
        Directory.Exists(cgroups.MemoryDir(sessionId)).ShouldBeFalse("its memory cgroup is removed");
        Directory.Exists(cgroups.CpuDir(sessionId)).ShouldBeFalse("its cpu cgroup is removed");
        Directory.Exists(Path.Combine(_state.Folder, "sessions", sessionId, "home")).ShouldBeFalse("its temporary home is removed");
        Directory.Exists(Path.GetDirectoryName(socket)).ShouldBeFalse("its socket folder is removed");
        File.Exists(Path.Combine(_state.Folder, "sessions", sessionId, ProcessSessionRecord.FileName)).ShouldBeFalse();
        File.Exists(Path.Combine(_state.Folder, "sessions", sessionId, LaunchRecord.FileName)).ShouldBeFalse();
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_home_delete_that_comes_while_a_session_of_that_user_starts_waits_for_the_start_and_no_later_start_of_theirs_runs()
    {
        var ct = TestContext.Current.CancellationToken;
        using var xvnc = new HeldXvnc();
        var runtime = await NewRuntimeAsync(xvncPath: xvnc.Path);
        SessionStartArgs ArgsOf(string user, string userId) => Args("touch \"$HOME/was-here\"; exec xterm", persistentHome: true) with
        {
            SessionId = $"{user}-xterm-" + Guid.NewGuid().ToString("N")[..6], User = user, UserId = userId,
        };
        string HomeOf(string userId) => Path.Combine(_state.Folder, "homes", "id." + userId);
        string DeferralOf(string userId) => Path.Combine(_state.Folder, "home-deletes", userId);

        // A start that is given up after the home.delete came: the home goes with it.
        var doomedId = Guid.NewGuid().ToString("N");
        var doomed = ArgsOf("ivan", doomedId);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var doomedStart = runtime.StartAsync(doomed, cancel.Token);
        await HeldXvncSocketAsync(doomed.SessionId);
        await runtime.DeleteHomeAsync(doomedId, ct);
        Directory.Exists(HomeOf(doomedId)).ShouldBeTrue("the starting session's home is not pulled from under it");
        File.Exists(DeferralOf(doomedId)).ShouldBeTrue("deferred until the start ends");
        await cancel.CancelAsync();
        await FailureOfAsync(doomedStart);
        Directory.Exists(HomeOf(doomedId)).ShouldBeFalse("deleted once the start it waited for was given up");
        File.Exists(DeferralOf(doomedId)).ShouldBeFalse();

        // A start that succeeds: its session keeps the home until it ends.
        var userId = Guid.NewGuid().ToString("N");
        var args = ArgsOf("hank", userId);
        var start = runtime.StartAsync(args, ct);
        await HeldXvncSocketAsync(args.SessionId);
        Directory.Exists(HomeOf(userId)).ShouldBeTrue("made by the start, which now waits for Xvnc");
        await runtime.DeleteHomeAsync(userId, ct);
        File.Exists(DeferralOf(userId)).ShouldBeTrue("deferred: a session of that home is starting");
        xvnc.Open();
        await start;
        await TestProcesses.WaitUntilAsync(() => File.Exists(Path.Combine(HomeOf(userId), "was-here")), Wait, "the session wrote to its home");

        // The user is deleted: no start of theirs runs here any more, so none can make their home again once it is gone.
        var again = ArgsOf("hank", userId);
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(again, ct))).Message.ShouldBe(
            $"user hank (id {userId}) was deleted: the control plane sent this agent the deletion of their home, so no session of theirs starts here");
        Directory.Exists(Path.Combine(_state.Folder, "sessions", again.SessionId)).ShouldBeFalse();
        (await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(ArgsOf("ivan", doomedId), ct))).Message.ShouldContain("was deleted");

        await runtime.StopAsync(args.SessionId, ct);
        Directory.Exists(HomeOf(userId)).ShouldBeFalse("deleted once its last session stopped");
        // Another user's start is not affected.
        var other = ArgsOf("iris", Guid.NewGuid().ToString("N"));
        await runtime.StartAsync(other, ct);
        await runtime.StopAsync(other.SessionId, ct);
    }

    [Fact]
    public async Task A_start_the_agent_ended_in_after_letting_the_app_start_is_killed_at_the_next_start_without_cgroups()
    {
        var ct = TestContext.Current.CancellationToken;
        var noCgroups = Path.Combine(_state.Folder, "no-cgroups");
        var first = await NewRuntimeAsync(cgroupRoot: noCgroups);
        var args = Args();
        await first.StartAsync(args, ct);
        var dir = Path.Combine(_state.Folder, "sessions", args.SessionId);
        File.Exists(Path.Combine(dir, LaunchRecord.FileName)).ShouldBeFalse("removed once the session's record is saved");
        var record = Record(args.SessionId);
        var pgid = record["pgid"]!.GetValue<int>();
        await first.DisposeAsync();
        // What an agent that ended between the launch file and the session's record leaves: the launch record, no session record.
        File.WriteAllText(Path.Combine(dir, LaunchRecord.FileName), new JsonObject
        {
            ["pgid"] = pgid, ["display"] = record["display"]!.DeepClone(), ["leader"] = record["leader"]!.DeepClone(), ["xvnc"] = record["xvnc"]!.DeepClone(),
        }.ToJsonString());
        File.Delete(Path.Combine(dir, ProcessSessionRecord.FileName));
        TestProcesses.Group(pgid).Count.ShouldBeGreaterThan(1, "Xvnc and the app outlived the agent");

        var second = await NewRuntimeAsync(cgroupRoot: noCgroups);

        second.Inventory().ShouldBeEmpty();
        await TestProcesses.WaitUntilAsync(() => TestProcesses.Group(pgid).Count == 0, Wait, "every process of the cut-short start killed");
        File.Exists(Path.Combine(dir, LaunchRecord.FileName)).ShouldBeFalse();
        _log.Contains($"The start of session {args.SessionId} was cut short by the agent's end", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();
        // Its display is free again: the next start may take it.
        var next = Args();
        await second.StartAsync(next, ct);
        await second.StopAsync(next.SessionId, ct);
    }

    [Fact]
    public async Task A_start_whose_record_cannot_be_written_leaves_no_process_cgroup_or_folder_behind()
    {
        using var xvnc = new HeldXvnc();
        var runtime = await NewRuntimeAsync(xvncPath: xvnc.Path);
        var args = Args();
        var start = runtime.StartAsync(args, TestContext.Current.CancellationToken);
        var socket = await HeldXvncSocketAsync(args.SessionId);
        // The record is written beside and renamed over session.json: a folder of that name makes the rename fail
        // (EISDIR), root or not, after Xvnc and the app run.
        Directory.CreateDirectory(Path.Combine(_state.Folder, "sessions", args.SessionId, ProcessSessionRecord.FileName));
        Directory.Exists(Path.Combine(_state.Folder, "sessions", args.SessionId, "home")).ShouldBeTrue();
        Directory.Exists(Cgroups().MemoryDir(args.SessionId)).ShouldBeTrue();
        xvnc.Open();

        (await FailureOfAsync(start)).ShouldBeAssignableTo<IOException>();

        _log.Contains($"Session {args.SessionId} failed to start", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();
        await NothingOfTheStartIsLeftAsync(runtime, args.SessionId, socket);
    }

    [Fact]
    public async Task A_start_cancelled_while_Xvnc_starts_leaves_no_process_cgroup_or_folder_behind()
    {
        using var xvnc = new HeldXvnc();
        var runtime = await NewRuntimeAsync(xvncPath: xvnc.Path);
        var args = Args();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var start = runtime.StartAsync(args, cancel.Token);
        var socket = await HeldXvncSocketAsync(args.SessionId);
        await cancel.CancelAsync();

        (await FailureOfAsync(start)).ShouldBeAssignableTo<OperationCanceledException>();

        await NothingOfTheStartIsLeftAsync(runtime, args.SessionId, socket);
    }

    [Fact]
    public async Task The_socket_folder_of_a_start_the_agent_died_in_is_removed_when_the_agent_starts_again()
    {
        var first = await NewRuntimeAsync();
        var args = Args();
        await first.StartAsync(args, TestContext.Current.CancellationToken);
        var socketDir = Path.GetDirectoryName(Record(args.SessionId)["socketPath"]!.GetValue<string>())!;
        var pgid = Record(args.SessionId)["pgid"]!.GetValue<int>();
        await first.DisposeAsync();
        // What an agent that died before it wrote the record leaves: the session's folder without a record, its socket
        // folder, and processes nothing tracks (they die with the machine's next clean-up; here with the test).
        TestProcesses.KillGroup(pgid);
        File.Delete(Path.Combine(_state.Folder, "sessions", args.SessionId, ProcessSessionRecord.FileName));
        Directory.Exists(socketDir).ShouldBeTrue();

        var second = await NewRuntimeAsync();

        second.Inventory().ShouldBeEmpty();
        Directory.Exists(socketDir).ShouldBeFalse();
        Directory.Exists(Path.Combine(_state.Folder, "sessions", args.SessionId)).ShouldBeTrue("its log is kept for a day");
    }

    /// <summary>
    /// The folder of a session that ended <paramref name="age"/> ago, with its log, as the agent leaves it (no record).
    /// Its time is set last: what is made inside it afterwards changes only the folders below.
    /// </summary>
    private string EndedSessionFolder(TimeSpan age, DateTimeOffset? now = null)
    {
        var dir = Path.Combine(_state.Folder, "sessions", "alice-ended-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(Path.Combine(dir, "run"));
        Directory.CreateDirectory(Path.Combine(dir, "home"));
        File.WriteAllText(Path.Combine(dir, "run", SessionLauncher.LogFile), "the app exited\n");
        Directory.SetLastWriteTimeUtc(dir, ((now ?? DateTimeOffset.UtcNow) - age).UtcDateTime);
        return dir;
    }

    [Fact]
    public async Task An_old_ended_sessions_folder_that_cannot_be_removed_is_named_in_one_warning_and_the_agent_starts_all_the_same()
    {
        // A mount its session left inside: rm --one-file-system does not cross into it and fails, root or not.
        var stuck = EndedSessionFolder(TimeSpan.FromDays(2));
        var mount = Path.Combine(stuck, "home", "mnt");
        Directory.CreateDirectory(mount); // changes the time of home/, not of the session's folder
        var old = EndedSessionFolder(TimeSpan.FromDays(2));
        var recent = EndedSessionFolder(TimeSpan.FromHours(1));
        (await RunAsync(["/bin/mount", "-t", "tmpfs", "-o", "size=1m", "streamspace-test", mount])).ShouldBe(0);
        try
        {
            var runtime = await NewRuntimeAsync();

            var warnings = _log.Entries.Where(e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning && e.Message.Contains(stuck, StringComparison.Ordinal)).ToList();
            warnings.ShouldHaveSingleItem().Message.ShouldStartWith($"The folder {stuck} of a session that ended more than 1.00:00:00 ago could not be removed");
            warnings[0].Message.ShouldEndWith($"rm: cannot remove '{mount}': Device or resource busy"); // rm's own words say why
            Directory.Exists(old).ShouldBeFalse("the other old folder is pruned all the same");
            Directory.Exists(recent).ShouldBeTrue("a log is kept for a day");
            // The agent works: a session starts and stops.
            var args = Args();
            await runtime.StartAsync(args, TestContext.Current.CancellationToken);
            await runtime.StopAsync(args.SessionId, TestContext.Current.CancellationToken);
        }
        finally
        {
            await RunAsync(["/bin/umount", mount]);
        }
    }

    [Fact]
    public async Task A_running_agent_prunes_the_folders_of_sessions_that_ended_more_than_a_day_ago_every_hour()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await NewRuntimeAsync(time: time, monitorInterval: TimeSpan.FromMinutes(1));
        var started = time.GetUtcNow();
        // Sessions that ended after the agent started: one right away, one 23 hours later.
        var ended = EndedSessionFolder(TimeSpan.Zero, started);
        var endedLater = EndedSessionFolder(TimeSpan.FromHours(-23), started);

        // Hours pass on the agent's clock, ten minutes at a time.
        while (Directory.Exists(ended) && time.GetUtcNow() - started < TimeSpan.FromHours(30))
        {
            time.Advance(TimeSpan.FromMinutes(10));
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        Directory.Exists(ended).ShouldBeFalse("a day and an hour after it ended, its folder is gone");
        (time.GetUtcNow() - started).ShouldBeGreaterThan(TimeSpan.FromDays(1), "kept for a day");
        Directory.Exists(endedLater).ShouldBeTrue("this one ended less than a day ago");
    }

    [Fact]
    public async Task A_socket_folder_another_account_made_first_or_a_link_is_refused_with_what_to_do()
    {
        // What another local account can do before a non-root agent's first start: make its folder in /tmp, open to all.
        var folder = Path.Combine(Path.GetTempPath(), "streamspace-agent-tests", "sockets-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(folder);
        try
        {
            // The runtime folder (XDG_RUNTIME_DIR) is used when it is there and the agent account's own: `su` keeps the
            // caller's, and a container may name one it never made.
            var tmpBase = Path.Combine(Path.GetTempPath(), "streamspace-alice");
            ProcessRuntime.SocketBaseFor(root: true, "/run/user/0", "root", 0).ShouldBe("/run/streamspace");
            ProcessRuntime.SocketBaseFor(root: false, folder, "alice", 0).ShouldBe(Path.Combine(folder, "streamspace"));
            ProcessRuntime.SocketBaseFor(root: false, folder, "alice", 1000).ShouldBe(tmpBase, "another account's runtime folder");
            ProcessRuntime.SocketBaseFor(root: false, Path.Combine(folder, "missing"), "alice", 0).ShouldBe(tmpBase, "a runtime folder that is not there");
            ProcessRuntime.SocketBaseFor(root: false, null, "alice", 0).ShouldBe(tmpBase);
            ProcessRuntime.SocketBaseFor(root: false, "relative/dir", "alice", 0).ShouldBe(tmpBase);

            var foreign = Path.Combine(folder, "streamspace-mallory");
            Directory.CreateDirectory(foreign);
            File.SetUnixFileMode(foreign, (UnixFileMode)Convert.ToInt32("777", 8));
            (await RunAsync(["/bin/chown", "65534:65534", foreign])).ShouldBe(0);
            var runtime = await NewRuntimeAsync(socketBase: foreign);
            var args = Args();
            var refused = await Should.ThrowAsync<SessionRuntimeException>(() => runtime.StartAsync(args, TestContext.Current.CancellationToken));
            refused.Message.ShouldBe($"sessions cannot start on this agent: its socket folder {foreign} belongs to uid 65534, not to the agent's account (uid 0), " +
                "so that account could replace what the agent puts in it (remove it, or run the agent with XDG_RUNTIME_DIR set to a folder of its own account)");
            Directory.EnumerateFileSystemEntries(foreign).ShouldBeEmpty("nothing is made in it");
            File.GetUnixFileMode(foreign).ShouldBe((UnixFileMode)Convert.ToInt32("777", 8), "nor is it changed");
            Directory.Exists(Path.Combine(_state.Folder, "sessions", args.SessionId, "home")).ShouldBeFalse();

            // A link, even to a folder of the agent's own account.
            var own = Path.Combine(folder, "own");
            Directory.CreateDirectory(own);
            var link = Path.Combine(folder, "streamspace-link");
            File.CreateSymbolicLink(link, own);
            var linked = await NewRuntimeAsync(socketBase: link);
            (await Should.ThrowAsync<SessionRuntimeException>(() => linked.StartAsync(Args(), TestContext.Current.CancellationToken)))
                .Message.ShouldContain($"its socket folder {link} is a link");
            Directory.EnumerateFileSystemEntries(own).ShouldBeEmpty();

            // One that cannot be made (its runtime folder went with the account's last login): said so, not "internal error".
            var unmade = await NewRuntimeAsync(socketBase: "/proc/streamspace-missing/streamspace");
            (await Should.ThrowAsync<SessionRuntimeException>(() => unmade.StartAsync(Args(), TestContext.Current.CancellationToken)))
                .Message.ShouldStartWith("sessions cannot start on this agent: its socket folder /proc/streamspace-missing/streamspace cannot be made: ");

            // One of its own, made by the agent, is used.
            var fresh = Path.Combine(folder, "streamspace-agent");
            var usable = await NewRuntimeAsync(socketBase: fresh);
            var started = Args();
            await usable.StartAsync(started, TestContext.Current.CancellationToken);
            Record(started.SessionId)["socketPath"]!.GetValue<string>().ShouldStartWith(fresh + "/");
            await usable.StopAsync(started.SessionId, TestContext.Current.CancellationToken);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task A_session_re_adopted_after_the_socket_base_moved_has_its_old_socket_folder_removed_when_it_stops()
    {
        var folder = Path.Combine(Path.GetTempPath(), "streamspace-agent-tests", "sockets-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(folder);
        try
        {
            var oldBase = Path.Combine(folder, "old");
            var first = await NewRuntimeAsync(socketBase: oldBase);
            var moved = Args();
            var planted = Args();
            await first.StartAsync(moved, TestContext.Current.CancellationToken);
            await first.StartAsync(planted, TestContext.Current.CancellationToken);
            var oldSocketDir = Path.GetDirectoryName(Record(moved.SessionId)["socketPath"]!.GetValue<string>())!;
            Path.GetDirectoryName(oldSocketDir).ShouldBe(oldBase);
            // A record naming a socket folder in a base of another account: that account could have put anything there.
            var foreignBase = Path.Combine(folder, "foreign");
            var foreignSocketDir = Path.Combine(foreignBase, "0123456789abcdef");
            Directory.CreateDirectory(foreignSocketDir);
            (await RunAsync(["/bin/chown", "-R", "65534:65534", foreignBase])).ShouldBe(0);
            var record = Record(planted.SessionId);
            record["socketPath"] = Path.Combine(foreignSocketDir, SessionLauncher.SocketFile);
            File.WriteAllText(Path.Combine(_state.Folder, "sessions", planted.SessionId, "session.json"), record.ToJsonString());
            await first.DisposeAsync(); // the agent is upgraded to one with another socket base

            var second = await NewRuntimeAsync(socketBase: Path.Combine(folder, "new"));
            second.Inventory().Select(s => s.SessionId).Order(StringComparer.Ordinal).ShouldBe(new[] { moved.SessionId, planted.SessionId }.Order(StringComparer.Ordinal));
            await second.StopAsync(moved.SessionId, TestContext.Current.CancellationToken);
            await second.StopAsync(planted.SessionId, TestContext.Current.CancellationToken);

            Directory.Exists(oldSocketDir).ShouldBeFalse("the old base is the agent's own and the folder one it made");
            Directory.Exists(oldBase).ShouldBeTrue();
            Directory.Exists(foreignSocketDir).ShouldBeTrue("a folder in another account's base is not the agent's to remove");
            _log.Contains($"The socket folder {foreignSocketDir} of session {planted.SessionId} is left in place", Microsoft.Extensions.Logging.LogLevel.Warning).ShouldBeTrue();

            // Nor is anything removed that the runtime does not make: a link, a folder of a name it never gives, one of
            // another account in the agent's own base, or a path that climbs out of the base.
            var sessionRun = Path.Combine(_state.Folder, "sessions", moved.SessionId, "run");
            var target = Path.Combine(folder, "target");
            Directory.CreateDirectory(target);
            var link = Path.Combine(oldBase, "fedcba9876543210");
            File.CreateSymbolicLink(link, target);
            ProcessRuntime.SocketDirProblem(link, sessionRun, 0).ShouldBe("it is a link");
            var named = Path.Combine(oldBase, "not-a-hash");
            Directory.CreateDirectory(named);
            ProcessRuntime.SocketDirProblem(named, sessionRun, 0).ShouldBe("its name is not one the agent gives a socket folder");
            var others = Path.Combine(oldBase, "00000000000000aa");
            Directory.CreateDirectory(others);
            (await RunAsync(["/bin/chown", "65534:65534", others])).ShouldBe(0);
            ProcessRuntime.SocketDirProblem(others, sessionRun, 0).ShouldBe("it belongs to uid 65534, neither the session's account nor the agent's");
            ProcessRuntime.SocketDirProblem(oldBase + "/../foreign/0123456789abcdef", sessionRun, 0).ShouldBe("it is not a normalized absolute path");
            ProcessRuntime.SocketDirProblem(foreignSocketDir, sessionRun, 0).ShouldBe($"the folder it lies in, {foreignBase}, is not a folder of the agent's own account");
            ProcessRuntime.SocketDirProblem(Path.Combine(oldBase, "00000000000000bb"), sessionRun, 0).ShouldBeNull("one that is gone");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var runtime in _runtimes) await runtime.DisposeAsync();
        }
        finally
        {
            _state.Dispose();
        }
    }
}
