using System.Net;
using System.Net.Sockets;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>The control plane process when it cannot start, as an operator sees it: exit code and its last words.</summary>
public sealed class StartupFailureTests
{
    /// <summary>What a control plane process that ended by itself left: its exit code, its output, whether it made a database.</summary>
    private sealed record Ending(int ExitCode, string Output, bool MadeDatabase);

    /// <summary>
    /// Starts a control plane (SQLite in a data folder of its own, no embedded agent, any port) with <paramref name="settings"/>
    /// on top, and waits up to <paramref name="within"/> (30 s unless given) for it to end.
    /// </summary>
    /// <param name="meanwhile">What happens to the running process before it ends by itself, if anything.</param>
    private static async Task<Ending> StartUntilItEndsAsync(string name, Dictionary<string, string?> settings,
        Func<ManagedProcess, Task>? meanwhile = null, TimeSpan? within = null)
    {
        var data = Directory.CreateTempSubdirectory($"streamspace-e2e-{name}-").FullName;
        try
        {
            var env = new Dictionary<string, string?>
            {
                ["STREAMSPACE_URLS"] = "http://127.0.0.1:0",
                ["STREAMSPACE_DATA"] = data,
                ["STREAMSPACE_ADMIN_PASSWORD"] = Platform.AdminPassword,
                ["STREAMSPACE_EMBEDDED_AGENT"] = "false",
            };
            foreach (var (key, value) in settings) env[key] = value;
            await using var cp = ManagedProcess.Start($"control-plane-{name}", Paths.ControlPlaneExe, env);
            if (meanwhile is not null) await meanwhile(cp);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            timeout.CancelAfter(within ?? TimeSpan.FromSeconds(30));
            await cp.WaitForExitAsync(timeout.Token);
            return new Ending(cp.ExitCode, cp.Output, File.Exists(Path.Combine(data, "streamspace.db")));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task A_control_plane_whose_address_is_taken_exits_at_once_saying_so_plainly()
    {
        // Another program (or a second ./run.sh) already listens there.
        using var occupant = new TcpListener(IPAddress.Loopback, 0);
        occupant.Start();
        var url = $"http://127.0.0.1:{((IPEndPoint)occupant.LocalEndpoint).Port}";

        var ending = await StartUntilItEndsAsync("port-taken", new() { ["STREAMSPACE_URLS"] = url });

        ending.ExitCode.ShouldBe(1, ending.Output);
        ending.Output.ShouldContain($"streamspace: Cannot listen on {url}: the address is already in use");
        ending.Output.ShouldContain("STREAMSPACE_URLS");
        ending.Output.ShouldNotContain("Unhandled exception");
        ending.MadeDatabase.ShouldBeFalse("said before any start-up work");
    }

    [Theory]
    [InlineData("STREAMSPACE_HEARTBEAT_SECONDS", "abc", "STREAMSPACE_HEARTBEAT_SECONDS must be a whole number, got 'abc'")]
    [InlineData("STREAMSPACE_HEARTBEAT_SECONDS", "0", "Invalid StreamSpace configuration: STREAMSPACE_HEARTBEAT_SECONDS (StreamSpace__HeartbeatSeconds) must be between 1 and 3600")]
    [InlineData("StreamSpace__IdleTimeout", "00:00:10", "Invalid StreamSpace configuration: StreamSpace__IdleTimeout must be 0 (off) or at least 00:01:00")]
    [InlineData("STREAMSPACE_EMBEDDED_AGENT", "maybe", "STREAMSPACE_EMBEDDED_AGENT must be true or false, got 'maybe'")]
    [InlineData("STREAMSPACE_DATABASE", "mysql://root:hunter2@db/x", "STREAMSPACE_DATABASE must be 'sqlite:PATH' or 'postgres://user:pass@host:port/db', got 'mysql://root:***@db/x'")]
    // The password is not repeated when it holds an '@', nor in a connection string's Password= or Pwd= (any spacing).
    [InlineData("STREAMSPACE_DATABASE", "postgres://u:pg@Secret@/x", "STREAMSPACE_DATABASE is not a valid postgres:// URL (postgres://user:pass@host:port/db): 'postgres://u:***@/x'")]
    [InlineData("STREAMSPACE_DATABASE", "Database=x;Password=pgSecretPw77;Pooling=true", "STREAMSPACE_DATABASE must be 'sqlite:PATH' or 'postgres://user:pass@host:port/db', got 'Database=x;Password=***;Pooling=true'")]
    [InlineData("STREAMSPACE_DATABASE", "Database = x; pwd = pgSecretPw77", "STREAMSPACE_DATABASE must be 'sqlite:PATH' or 'postgres://user:pass@host:port/db', got 'Database = x; pwd = ***'")]
    // A name that is no setting is refused, not ignored with the setting left at its default.
    [InlineData("StreamSpace__IdelTimeout", "00:30:00", "Invalid StreamSpace configuration: StreamSpace__IdelTimeout is not a setting (did you mean StreamSpace__IdleTimeout?)")]
    [InlineData("StreamSpace__Data", "/srv/streamspace", "Invalid StreamSpace configuration: StreamSpace__Data is not a setting (did you mean StreamSpace__DataFolder?)")]
    [InlineData("StreamSpace__Web__PageSize", "50", "Invalid StreamSpace configuration: StreamSpace__Web__PageSize is not a setting (did you mean StreamSpace__Web__AuditPageSize?)")]
    [InlineData("StreamSpace__Streaming__TicketLifeTime2", "00:00:30", "Invalid StreamSpace configuration: StreamSpace__Streaming__TicketLifeTime2 is not a setting (did you mean StreamSpace__Streaming__TicketLifetime?)")]
    [InlineData("StreamSpace__Agent__MaxSesions", "5", "Invalid StreamSpace configuration: StreamSpace__Agent__MaxSesions is not a setting (did you mean StreamSpace__Agent__MaxSessions?)")]
    [InlineData("StreamSpace__Agent__SessionMaxProcesses", "abc", "invalid agent configuration: StreamSpace__Agent__SessionMaxProcesses must be a whole number, got 'abc'")]
    [InlineData("StreamSpace__CommandTtl", "banana", "Invalid StreamSpace configuration: StreamSpace__CommandTtl must be a duration ([d.]hh:mm:ss, e.g. 00:10:00 or 30.00:00:00), got 'banana'")]
    [InlineData("StreamSpace__Agent__SessionUserPerOwner", "perhaps", "invalid agent configuration: StreamSpace__Agent__SessionUserPerOwner must be true or false, got 'perhaps'")]
    [InlineData("StreamSpace__MaxRequestBodyBytes", "1e6", "Invalid StreamSpace configuration: StreamSpace__MaxRequestBodyBytes must be a whole number, got '1e6'")]
    [InlineData("STREAMSPACE_ADMIN_PASSWORD", "short", "Invalid StreamSpace configuration: STREAMSPACE_ADMIN_PASSWORD must be at least 8 characters")]
    [InlineData("STREAMSPACE_SESSION_LIMITS", "perhaps", "STREAMSPACE_SESSION_LIMITS must be true or false, got 'perhaps'")]
    [InlineData("STREAMSPACE_SESSION_USER", "bad:user", "invalid agent configuration: STREAMSPACE_SESSION_USER 'bad:user' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("STREAMSPACE_JWT_KEY", "not base64 at all!", "Invalid StreamSpace configuration: STREAMSPACE_JWT_KEY must be base64 of at least 32 bytes (e.g. the output of 'openssl rand -base64 48')")]
    [InlineData("STREAMSPACE_JWT_KEY", "c2hvcnQta2V5", "Invalid StreamSpace configuration: STREAMSPACE_JWT_KEY must be base64 of at least 32 bytes (e.g. the output of 'openssl rand -base64 48')")]
    [InlineData("StreamSpace__Web__AuditPageSize", "0", "Invalid StreamSpace configuration: StreamSpace__Web__AuditPageSize must be between 1 and 1000")]
    [InlineData("StreamSpace__Web__LiveRefreshInterval", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__Web__LiveRefreshInterval must be between 00:00:00.1 and 49.00:00:00")]
    [InlineData("StreamSpace__MaxRequestBodyBytes", "-1", "Invalid StreamSpace configuration: StreamSpace__MaxRequestBodyBytes must be between 1024 and 1073741824")]
    [InlineData("StreamSpace__CommandPruneInterval", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__CommandPruneInterval must be at most 49.00:00:00")]
    [InlineData("StreamSpace__ReconcileInterval", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__ReconcileInterval must be at most 49.00:00:00")]
    [InlineData("StreamSpace__HelloTimeout", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__HelloTimeout must be at most 49.00:00:00")]
    [InlineData("StreamSpace__TokenLifetime", "3650000.00:00:00", "Invalid StreamSpace configuration: StreamSpace__TokenLifetime must be at most 365.00:00:00")]
    [InlineData("StreamSpace__IdleTimeout", "3650000.00:00:00", "Invalid StreamSpace configuration: StreamSpace__IdleTimeout must be at most 36500.00:00:00")]
    [InlineData("StreamSpace__CommandRetention", "3650000.00:00:00", "Invalid StreamSpace configuration: StreamSpace__CommandRetention must be at most 36500.00:00:00")]
    [InlineData("StreamSpace__Streaming__CloseTimeout", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__Streaming__CloseTimeout must be positive and at most 49.00:00:00")]
    [InlineData("StreamSpace__Streaming__CloseTimeout", "-00:00:01", "Invalid StreamSpace configuration: StreamSpace__Streaming__CloseTimeout must be positive and at most 49.00:00:00")]
    [InlineData("StreamSpace__Streaming__StallTimeout", "00:00:00", "Invalid StreamSpace configuration: StreamSpace__Streaming__StallTimeout must be positive and at most 49.00:00:00")]
    [InlineData("StreamSpace__Streaming__CloseTimeout", "banana", "Invalid StreamSpace configuration: StreamSpace__Streaming__CloseTimeout must be a duration ([d.]hh:mm:ss, e.g. 00:10:00 or 30.00:00:00), got 'banana'")]
    [InlineData("StreamSpace__Streaming__ActivityFlushInterval", "60.00:00:00", "Invalid StreamSpace configuration: StreamSpace__Streaming__ActivityFlushInterval must be positive and at most 49.00:00:00")]
    [InlineData("StreamSpace__Streaming__ActivityFlushInterval", "00:00:00", "Invalid StreamSpace configuration: StreamSpace__Streaming__ActivityFlushInterval must be positive and at most 49.00:00:00")]
    [InlineData("StreamSpace__Streaming__StreamOpenCommandTtl", "3650000.00:00:00", "Invalid StreamSpace configuration: StreamSpace__Streaming__StreamOpenCommandTtl must be positive and at most 1.00:00:00: agents remember a finished command for 24 h, and one redelivered later could run twice")]
    [InlineData("StreamSpace__CommandTtl", "2.00:00:00", "Invalid StreamSpace configuration: StreamSpace__CommandTtl must be positive and at most 1.00:00:00: agents remember a finished command for 24 h, and one redelivered later could run twice")]
    [InlineData("StreamSpace__Streaming__TicketLifetime", "00:01:01", "Invalid StreamSpace configuration: StreamSpace__Streaming__TicketLifetime must be positive and at most 00:01:00")]
    [InlineData("StreamSpace__Streaming__DataTokenLifetime", "00:00:31", "Invalid StreamSpace configuration: StreamSpace__Streaming__DataTokenLifetime must be positive and at most 00:00:30")]
    [InlineData("StreamSpace__Streaming__RendezvousTimeout", "00:00:31", "Invalid StreamSpace configuration: StreamSpace__Streaming__RendezvousTimeout must be positive and at most StreamSpace__Streaming__DataTokenLifetime (00:00:30)")]
    [InlineData("StreamSpace__Streaming__AllowedOrigins__0", "not an origin", "Invalid StreamSpace configuration: StreamSpace__Streaming__AllowedOrigins__0 must be scheme://host[:port], got 'not an origin'")]
    [InlineData("StreamSpace__Streaming__ReplicaUrl", "ftp://127.0.0.7/", "Invalid StreamSpace configuration: StreamSpace__Streaming__ReplicaUrl must be http(s)://host[:port][/path] (this replica's own address as agents reach it), got 'ftp://127.0.0.7/'")]
    [InlineData("STREAMSPACE_DATABASE", "sqlite:/etc/passwd/streamspace.db", "STREAMSPACE_DATABASE: cannot make the folder '/etc/passwd' for the SQLite database: The file '/etc/passwd' already exists.")]
    [InlineData("STREAMSPACE_SESSION_MAX_PROCESSES", "5", "invalid agent configuration: SessionMaxProcesses (STREAMSPACE_SESSION_MAX_PROCESSES) must be between 16 and 4194304")]
    [InlineData("StreamSpace__IdleAction", "sleep", "Invalid StreamSpace configuration: StreamSpace__IdleAction must be 'hibernate' or 'terminate', got 'sleep'")]
    // Kestrel read these only once it started listening, after the database work: an abort with a stack trace, or (a
    // port that is not a number) port 80 on every interface.
    [InlineData("STREAMSPACE_URLS", "garbage", "Invalid StreamSpace configuration: STREAMSPACE_URLS must be http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000); 'garbage' is not an address")]
    [InlineData("STREAMSPACE_URLS", "http://127.0.0.1:notaport", "Invalid StreamSpace configuration: STREAMSPACE_URLS must be http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000); 'http://127.0.0.1:notaport' has the port 'notaport'; a port is a number from 0 to 65535")]
    [InlineData("STREAMSPACE_URLS", "http://127.0.0.1:0;http://127.0.0.1:99999", "Invalid StreamSpace configuration: STREAMSPACE_URLS must be http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000); 'http://127.0.0.1:99999' has the port '99999'; a port is a number from 0 to 65535")]
    [InlineData("STREAMSPACE_URLS", "ftp://127.0.0.1:9999", "Invalid StreamSpace configuration: STREAMSPACE_URLS must be http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000); 'ftp://127.0.0.1:9999' has the scheme 'ftp'; the control plane serves http and https")]
    [InlineData("ASPNETCORE_URLS", "http://[::1:8000", "Invalid StreamSpace configuration: the listen address (--urls, ASPNETCORE_URLS) must be http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000); 'http://[::1:8000' has an IPv6 host without its closing ']'")]
    public async Task A_setting_the_control_plane_cannot_start_with_ends_it_at_once_with_one_plain_line(string variable, string value, string message)
    {
        // With the embedded agent on, so its settings are read too.
        var ending = await StartUntilItEndsAsync("bad-setting", new() { ["STREAMSPACE_EMBEDDED_AGENT"] = "true", [variable] = value });

        ending.ExitCode.ShouldBe(2, ending.Output);
        ending.Output.Trim().ShouldBe($"streamspace: {message}");
        ending.MadeDatabase.ShouldBeFalse();
    }

    [Fact]
    public async Task A_database_that_refuses_the_control_plane_ends_the_start_saying_which_and_why()
    {
        // The test PostgreSQL server, a database on it that does not exist: waiting would not cure it.
        var server = Environment.GetEnvironmentVariable(TestDatabase.PostgresVariable)
            ?? throw new InvalidOperationException($"{TestDatabase.PostgresVariable} is not set (./test.sh sets it)");
        var missing = new UriBuilder(server) { Path = "/streamspace_no_such_database" }.Uri.ToString();

        var ending = await StartUntilItEndsAsync("no-database", new() { ["STREAMSPACE_DATABASE"] = missing });

        ending.ExitCode.ShouldBe(3, ending.Output);
        ending.Output.ShouldContain("streamspace: cannot open the database postgres://");
        ending.Output.ShouldContain("/streamspace_no_such_database: 3D000: database \"streamspace_no_such_database\" does not exist");
        ending.Output.ShouldNotContain("Unhandled exception");
    }

    [Fact]
    public async Task A_database_that_accepts_connections_and_never_answers_ends_the_start_after_30_s()
    {
        // A hung server, or a proxy in front of one that is down: every connection is accepted, nothing is ever said on it.
        // Each attempt then lasts Npgsql's connect timeout (5 s), and 30 attempts of it were 3 minutes.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var held = new List<Socket>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true) held.Add(await silent.AcceptSocketAsync(stop.Token));
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // Stopped, or the listener closed by a failing test.
            }
        }, TestContext.Current.CancellationToken);
        var database = $"postgres://postgres@127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/streamspace";

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ending = await StartUntilItEndsAsync("silent-database", new() { ["STREAMSPACE_DATABASE"] = database },
            within: TimeSpan.FromSeconds(45));
        var took = clock.Elapsed;
        await stop.CancelAsync();
        await accepting;
        foreach (var socket in held) socket.Dispose();

        ending.ExitCode.ShouldBe(3, ending.Output);
        took.ShouldBeLessThan(TimeSpan.FromSeconds(40), ending.Output);
        took.ShouldBeGreaterThan(TimeSpan.FromSeconds(29), ending.Output); // it did wait, as documented
        held.Count.ShouldBeGreaterThan(1, "it tried more than once");
        ending.Output.ShouldContain("streamspace: cannot open the database postgres://postgres@127.0.0.1:");
        // The reason is the last attempt's: Npgsql's 5 s ran out reading the server's answer ("The operation has timed out"),
        // or, once in a full run with every core busy starting the suite's processes, before its connect completed.
        ending.Output.ShouldMatch(@"streamspace: cannot open the database \S+: (The operation has timed out|Failed to connect to 127\.0\.0\.1:\d+) \(gave up after 3[01] s: \d+ attempts, a second apart");
        ending.Output.ShouldNotContain("Unhandled exception");
    }

    [Fact]
    public async Task A_database_whose_schema_cannot_be_migrated_ends_the_start_saying_which_and_why()
    {
        // A table of the first migration's name already there (another application's, a half-restored dump).
        await using var database = await TestDatabase.CreateAsync(StreamSpace.ControlPlane.Data.DatabaseKind.Postgres);
        await using (var db = new StreamSpace.ControlPlane.Data.Db(database.Target))
        await using (var conn = await db.OpenAsync(TestContext.Current.CancellationToken))
        await using (var create = conn.CreateCommand())
        {
            create.CommandText = "CREATE TABLE users (something_else int)";
            await create.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var ending = await StartUntilItEndsAsync("migration-fails", new() { ["STREAMSPACE_DATABASE"] = database.Setting });

        ending.ExitCode.ShouldBe(3, ending.Output);
        ending.Output.ShouldContain("streamspace: cannot bring the schema of the database postgres://");
        ending.Output.ShouldContain("42P07: relation \"users\" already exists");
        ending.Output.ShouldNotContain("Unhandled exception");
    }

    [Theory]
    [InlineData(Posix.SIGINT)]
    [InlineData(Posix.SIGTERM)]
    public async Task A_control_plane_stopped_while_it_waits_for_its_database_exits_cleanly(int signal)
    {
        // Nothing listens there: the control plane retries every second for 30 s, unless it is stopped.
        var closed = $"postgres://postgres@127.0.0.1:{FreePort.Next()}/streamspace";

        var ending = await StartUntilItEndsAsync("stopped-while-starting", new() { ["STREAMSPACE_DATABASE"] = closed }, async cp =>
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (!cp.Output.Contains("Database not reachable yet", StringComparison.Ordinal) && !cp.HasExited && DateTime.UtcNow < until)
                await Task.Delay(50, TestContext.Current.CancellationToken);
            cp.Output.ShouldContain("Database not reachable yet");
            cp.Signal(signal);
        });

        ending.ExitCode.ShouldBe(0, ending.Output);
        ending.Output.ShouldContain("streamspace: stopped before start-up finished, as asked");
        ending.Output.ShouldNotContain("Unhandled exception");
        ending.Output.ShouldNotContain("cannot open the database");
    }

    [Fact]
    public async Task A_control_plane_whose_embedded_agent_cannot_make_its_session_user_ends_with_one_plain_line_not_an_abort()
    {
        // A valid name that useradd still refuses (as root, like these tests): a group of that name exists, no account.
        var name = "sst" + Guid.NewGuid().ToString("N")[..10];
        await RunAsync("groupadd", name);
        try
        {
            var ending = await StartUntilItEndsAsync("embedded-session-user", new()
            {
                ["STREAMSPACE_EMBEDDED_AGENT"] = "true",
                ["STREAMSPACE_SESSION_USER"] = name,
                ["STREAMSPACE_SESSION_USER_PER_OWNER"] = "false",
            });

            ending.ExitCode.ShouldBe(2, ending.Output);
            // Found once the agent starts, after the control plane logged where it listens (and the host logged the failure
            // as JSON): its last line, not an unhandled exception that aborts the process.
            ending.Output.Trim().Split('\n')[^1].ShouldBe(
                $"streamspace: invalid agent configuration: the session user '{name}' cannot be used (user '{name}' could not be created); STREAMSPACE_SESSION_USER sets it");
            ending.Output.ShouldNotContain("Unhandled exception");
        }
        finally
        {
            await RunAsync("groupdel", name);
        }
    }

    private static async Task RunAsync(string program, params string[] arguments)
    {
        using var process = System.Diagnostics.Process.Start(program, arguments);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        process.ExitCode.ShouldBe(0, $"{program} {string.Join(' ', arguments)}");
    }

    [Fact]
    public async Task A_control_plane_whose_embedded_agent_cannot_use_its_state_folder_ends_at_once_with_one_plain_line()
    {
        using var scratch = new ScratchFolder("streamspace-e2e-state-file-");
        var state = await scratch.UnusableStateFolderAsync(TestContext.Current.CancellationToken);

        var ending = await StartUntilItEndsAsync("embedded-state-file", new()
        {
            ["STREAMSPACE_EMBEDDED_AGENT"] = "true",
            ["STREAMSPACE_AGENT_STATE"] = state,
        });

        ending.ExitCode.ShouldBe(2, ending.Output);
        ending.Output.Trim().ShouldStartWith($"streamspace: invalid agent configuration: the state folder {state} cannot be used (");
        ending.Output.Trim().ShouldEndWith("STREAMSPACE_AGENT_STATE sets it");
        ending.Output.Trim().ShouldNotContain("\n");
        ending.MadeDatabase.ShouldBeFalse("said before any start-up work");
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_second_control_plane_on_a_data_folder_in_use_ends_before_it_listens_with_one_plain_line()
    {
        // A second ./run.sh in the same checkout while the first runs: the same data folder, so the same embedded agent
        // state folder, on another port.
        using var scratch = new ScratchFolder("streamspace-e2e-data-twice-");
        // Temporary folders are made 0700; as root the embedded agent would then keep its state elsewhere (and say why).
        File.SetUnixFileMode(scratch.Path, (UnixFileMode)Convert.ToInt32("755", 8));
        var data = Path.Combine(scratch.Path, "data");
        var firstAddress = new Uri($"http://127.0.0.1:{FreePort.Next()}");
        var settings = new Dictionary<string, string?>
        {
            ["STREAMSPACE_URLS"] = firstAddress.ToString().TrimEnd('/'),
            ["STREAMSPACE_DATA"] = data,
            ["STREAMSPACE_ADMIN_PASSWORD"] = Platform.AdminPassword,
            ["STREAMSPACE_EMBEDDED_AGENT"] = "true",
        };
        await using var first = ManagedProcess.Start("control-plane-data-first", Paths.ControlPlaneExe, settings);
        using var http = new HttpClient { BaseAddress = firstAddress, Timeout = TimeSpan.FromSeconds(2) };
        await Platform.WaitUntilAsync(async () =>
        {
            if (first.HasExited) throw new InvalidOperationException($"the first control plane exited: {first.Output}");
            if (!first.Output.Contains("Embedded local agent", StringComparison.Ordinal)) return false;
            try
            {
                return (await http.GetAsync("/readyz", TestContext.Current.CancellationToken)).IsSuccessStatusCode;
            }
            catch (HttpRequestException) { return false; }
            catch (TaskCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested) { return false; }
        }, TimeSpan.FromSeconds(60), "the first control plane ready, its embedded agent holding the state folder");

        var secondPort = FreePort.Next();
        settings["STREAMSPACE_URLS"] = $"http://127.0.0.1:{secondPort}";
        await using var second = ManagedProcess.Start("control-plane-data-second", Paths.ControlPlaneExe, settings);
        // Knocks on its port for as long as it lives: a socket that listens (Kestrel's, or the early one it hands Kestrel)
        // completes the connection even before anything answers it.
        var accepted = false;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!second.HasExited && DateTime.UtcNow < until)
        {
            using var knock = new TcpClient();
            try
            {
                await knock.ConnectAsync(IPAddress.Loopback, secondPort, TestContext.Current.CancellationToken);
                accepted = true;
            }
            catch (SocketException)
            {
            }
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await second.WaitForExitAsync(timeout.Token);

        second.ExitCode.ShouldBe(2, second.Output);
        second.Output.Trim().ShouldBe(
            $"streamspace: the agent state folder {Path.Combine(data, "agent-local")} is in use by another agent (pid {first.Pid}): " +
            "one state folder serves one agent process (STREAMSPACE_AGENT_STATE)");
        second.Output.ShouldNotContain("\"LogLevel\":\"Error\"");
        second.Output.ShouldNotContain("Now listening");
        accepted.ShouldBeFalse("the second control plane listened on its port before it refused");
        first.HasExited.ShouldBeFalse("the control plane that held the data folder was disturbed");
        using var ready = await http.GetAsync("/readyz", TestContext.Current.CancellationToken);
        ready.IsSuccessStatusCode.ShouldBeTrue("the first control plane still answers");
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Standalone_agent_settings_set_for_a_control_plane_with_the_embedded_agent_are_named_as_ignored()
    {
        // STREAMSPACE_MAX_SESSIONS meant for the embedded agent passed for applied while it kept its own capacity.
        using var scratch = new ScratchFolder("streamspace-e2e-ignored-");
        File.SetUnixFileMode(scratch.Path, (UnixFileMode)Convert.ToInt32("755", 8));
        const string token = "a-standalone-agents-token-1234";
        await using var cp = ManagedProcess.Start("control-plane-ignored", Paths.ControlPlaneExe, new Dictionary<string, string?>
        {
            ["STREAMSPACE_URLS"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["STREAMSPACE_DATA"] = Path.Combine(scratch.Path, "data"),
            ["STREAMSPACE_ADMIN_PASSWORD"] = Platform.AdminPassword,
            ["STREAMSPACE_EMBEDDED_AGENT"] = "true",
            ["StreamSpace__EmbeddedAgentMaxSessions"] = "3",
            ["STREAMSPACE_MAX_SESSIONS"] = "50",
            ["STREAMSPACE_AGENT_TOKEN"] = token,
        });
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!cp.Output.Contains("Embedded local agent", StringComparison.Ordinal) && !cp.HasExited && DateTime.UtcNow < until)
            await Task.Delay(100, TestContext.Current.CancellationToken);
        cp.HasExited.ShouldBeFalse(cp.Output);
        var warnings = cp.Output.Split('\n').Where(l => l.StartsWith('{'))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("LogLevel").GetString() == "Warning")
            .Select(e => e.GetProperty("Message").GetString()!).ToList();
        warnings.ShouldContain("STREAMSPACE_MAX_SESSIONS is set, but it is a standalone agent's setting and the embedded agent ignores it: its capacity is StreamSpace__EmbeddedAgentMaxSessions (3)");
        warnings.ShouldContain("STREAMSPACE_AGENT_TOKEN is set, but it is a standalone agent's setting and the embedded agent ignores it: it registers a token of its own at every start");
        warnings.ShouldNotContain(w => w.StartsWith("STREAMSPACE_REGION", StringComparison.Ordinal));
        cp.Output.ShouldNotContain(token);
    }
}
