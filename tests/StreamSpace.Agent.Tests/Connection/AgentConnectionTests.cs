using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Connection;

/// <summary>The real agent worker against a real (tiny) control plane over a loopback WebSocket.</summary>
public class AgentConnectionTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private readonly TestState _state = new();
    private readonly TestLog _log = new();
    private readonly List<AgentWorker> _workers = [];
    private TestControlPlane _cp = null!;

    public async ValueTask InitializeAsync() => _cp = await TestControlPlane.StartAsync();

    /// <summary>Options of an agent that reaches the control plane through <paramref name="proxy"/>, with keep-alive pings
    /// every 0.5 s and 1 s to answer them, so a silenced connection is given up on within 1.5 s.</summary>
    private AgentOptions BehindProxy(TcpProxy proxy)
    {
        var options = Options();
        options.ControlPlaneUrl = proxy.Url;
        options.KeepAliveInterval = TimeSpan.FromMilliseconds(500);
        options.KeepAliveTimeout = TimeSpan.FromSeconds(1);
        return options;
    }

    private AgentOptions Options(string? token = null) => new()
    {
        ControlPlaneUrl = _cp.Url,
        AgentId = TestControlPlane.AgentId,
        Token = token ?? TestControlPlane.Token,
        StateFolder = _state.Folder,
        Runtime = Platforms.Simulated,
        MaxSessions = 5,
        Region = "test-region",
    };

    private async Task<AgentWorker> StartAgentAsync(InstrumentedRuntime runtime, AgentOptions? options = null, Random? random = null)
    {
        var worker = new AgentWorker(options ?? Options(), runtime, _log, TimeProvider.System, random ?? Random.Shared);
        _workers.Add(worker);
        await worker.StartAsync(TestContext.Current.CancellationToken);
        return worker;
    }

    private static bool Has(List<Envelope> received, string type, string? commandId = null) =>
        received.Any(e => e.Type == type && (commandId is null || e.Payload.GetProperty("commandId").GetString() == commandId));

    private static ResultPayload ResultOf(List<Envelope> received, string commandId) =>
        received.Where(e => e.Type == MessageTypes.Result).Select(e => e.PayloadAs<ResultPayload>()).Single(r => r.CommandId == commandId);

    [Fact]
    public async Task Hello_carries_identity_and_full_inventory_then_heartbeats_flow()
    {
        var runtime = new InstrumentedRuntime { SessionLimits = "not enforced: the agent does not run as root" };
        await runtime.StartAsync(StartArgs.For("alice-xterm-aaaaaa"), TestContext.Current.CancellationToken);
        await runtime.StartAsync(StartArgs.For("bob-xterm-bbbbbb"), TestContext.Current.CancellationToken);
        await runtime.HibernateAsync("bob-xterm-bbbbbb", TestContext.Current.CancellationToken);
        var stopwatch = Stopwatch.StartNew();
        await StartAgentAsync(runtime);

        var connection = await _cp.NextConnectionAsync();
        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "a fresh agent is online within 2 s");
        connection.Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
        connection.Hello.Platform.ShouldBe(Platforms.Simulated);
        connection.Hello.Region.ShouldBe("test-region");
        connection.Hello.Draining.ShouldBeFalse();
        connection.Hello.Capacity.ShouldBe(new AgentCapacity { MaxSessions = 5, ActiveSessions = 2 });
        connection.Hello.Inventory.ShouldBe([
            new SessionInventoryItem { SessionId = "alice-xterm-aaaaaa", State = ObservedStates.Running },
            new SessionInventoryItem { SessionId = "bob-xterm-bbbbbb", State = ObservedStates.Hibernated },
        ]);
        connection.Hello.Version.ShouldNotBeNullOrWhiteSpace();
        connection.Hello.SessionLimits.ShouldBe("not enforced: the agent does not run as root");

        var received = await connection.CollectAsync(r => r.Count(e => e.Type == MessageTypes.Heartbeat) >= 2, Wait);
        var heartbeat = received.Last(e => e.Type == MessageTypes.Heartbeat).PayloadAs<HeartbeatPayload>();
        heartbeat.ShouldBe(new HeartbeatPayload { ActiveSessions = 2, MaxSessions = 5, Draining = false });
        _log.Contains("SIMULATED runtime").ShouldBeTrue("the simulated runtime says so in the logs");
    }

    [Fact]
    public async Task Second_agent_on_the_same_state_folder_is_refused_until_the_first_stops()
    {
        var first = await StartAgentAsync(new InstrumentedRuntime());
        await _cp.NextConnectionAsync();

        // The same agent started twice by mistake: it would adopt the first one's sessions and report its new ones as orphans.
        var refused = await Should.ThrowAsync<AgentOptionsException>(() => StartAgentAsync(new InstrumentedRuntime()));
        refused.Message.ShouldBe($"the agent state folder {Path.GetFullPath(_state.Folder)} is in use by another agent (pid {Environment.ProcessId}): " +
            "one state folder serves one agent process (STREAMSPACE_AGENT_STATE)");
        // Another folder is another agent's: it starts.
        using (var elsewhere = new TestState())
        {
            var options = Options();
            options.StateFolder = elsewhere.Folder;
            var other = await StartAgentAsync(new InstrumentedRuntime(), options);
            await _cp.NextConnectionAsync();
            await other.StopAsync(TestContext.Current.CancellationToken);
        }
        _cp.Attempts.ShouldBe(2, "the refused agent never dialled");
        first.Connected.ShouldBeTrue();

        await first.StopAsync(TestContext.Current.CancellationToken);
        await StartAgentAsync(new InstrumentedRuntime());
        (await _cp.NextConnectionAsync()).Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
    }

    [Fact]
    public async Task A_state_folder_from_before_agent_ids_were_recorded_is_adopted_by_the_agent_that_starts_on_it()
    {
        // A folder an agent used before the id was recorded: its lock file and command records, no agent-id.
        await File.WriteAllTextAsync(Path.Combine(_state.Folder, "agent.lock"), "12345\n", TestContext.Current.CancellationToken);
        Directory.CreateDirectory(Path.Combine(_state.Folder, "commands"));
        var owner = Path.Combine(_state.Folder, "agent-id");

        var worker = await StartAgentAsync(new InstrumentedRuntime());
        (await _cp.NextConnectionAsync()).Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
        (await File.ReadAllTextAsync(owner, TestContext.Current.CancellationToken)).ShouldBe(TestControlPlane.AgentId + "\n");
        if (!OperatingSystem.IsWindows()) File.GetUnixFileMode(owner).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        await worker.StopAsync(TestContext.Current.CancellationToken);

        // From now on the folder is that agent's: a standalone agent started on it with another STREAMSPACE_AGENT_ID is refused.
        var other = Options();
        other.AgentId = "worker-2";
        var refused = await Should.ThrowAsync<AgentOptionsException>(() => StartAgentAsync(new InstrumentedRuntime(), other));
        refused.Message.ShouldBe(
            $"the agent state folder {Path.GetFullPath(_state.Folder)} belongs to agent '{TestControlPlane.AgentId}', not 'worker-2': " +
            "its sessions are that agent's, and under another id the control plane would stop them all; " +
            $"start the agent as '{TestControlPlane.AgentId}' again (STREAMSPACE_AGENT_ID, StreamSpace__EmbeddedAgentId for the embedded agent), " +
            "or give 'worker-2' a state folder of its own (STREAMSPACE_AGENT_STATE)");
        _cp.Attempts.ShouldBe(1);
        await StartAgentAsync(new InstrumentedRuntime());
        (await _cp.NextConnectionAsync()).Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(+1)]
    public async Task A_command_is_not_run_once_it_expired_by_the_control_planes_clock_however_far_off_the_agents_clock_is(int hours)
    {
        // The control plane's clock an hour behind or ahead of the agent's: expiry is read against the welcome's time.
        _cp.ClockOffset = TimeSpan.FromHours(hours);
        var runtime = new InstrumentedRuntime();
        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();

        var expired = StartArgs.For("alice-xterm-dddddd");
        await connection.SendCommandAsync("late", CommandTypes.SessionStart, expired.SessionId, expired, expiresAt: connection.Now - TimeSpan.FromSeconds(1));
        var lateResult = ResultOf(await connection.CollectAsync(r => Has(r, MessageTypes.Result, "late"), Wait), "late");
        lateResult.Success.ShouldBeFalse();
        lateResult.Error.ShouldStartWith("expired before the agent could run it (the control plane gave up on it at ");
        runtime.Starts.ShouldBe(0, "an expired start starts nothing");

        var timely = StartArgs.For("alice-xterm-eeeeee");
        await connection.SendCommandAsync("timely", CommandTypes.SessionStart, timely.SessionId, timely, expiresAt: connection.Now + TimeSpan.FromSeconds(30));
        ResultOf(await connection.CollectAsync(r => Has(r, MessageTypes.Result, "timely"), Wait), "timely").Success.ShouldBeTrue();
        runtime.Inventory().Select(s => s.SessionId).ShouldBe([timely.SessionId]);
        _log.Contains("not run: it expired at").ShouldBeTrue();
    }

    [Fact]
    public async Task Command_delivered_twice_is_executed_once_also_across_an_agent_restart()
    {
        var runtime = new InstrumentedRuntime();
        var worker = await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();
        var args = StartArgs.For("alice-xterm-cccccc");

        await connection.SendCommandAsync("cmd-1", CommandTypes.SessionStart, args.SessionId, args);
        var first = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "cmd-1"), Wait);
        first.First(e => e.Type is MessageTypes.Ack or MessageTypes.Result).Type.ShouldBe(MessageTypes.Ack, "ack comes before the result");
        ResultOf(first, "cmd-1").Success.ShouldBeTrue();

        await connection.SendCommandAsync("cmd-1", CommandTypes.SessionStart, args.SessionId, args);
        var again = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "cmd-1"), Wait);
        Has(again, MessageTypes.Ack, "cmd-1").ShouldBeTrue();
        ResultOf(again, "cmd-1").Success.ShouldBeTrue();
        runtime.Starts.ShouldBe(1);

        // Restart the agent over the same state folder; the control plane redelivers.
        await worker.StopAsync(TestContext.Current.CancellationToken);
        await connection.CloseAsync();
        var restartedRuntime = new InstrumentedRuntime();
        await StartAgentAsync(restartedRuntime);
        var reconnected = await _cp.NextConnectionAsync();
        await reconnected.SendCommandAsync("cmd-1", CommandTypes.SessionStart, args.SessionId, args);
        var redelivered = await reconnected.CollectAsync(r => Has(r, MessageTypes.Result, "cmd-1"), Wait);
        Has(redelivered, MessageTypes.Ack, "cmd-1").ShouldBeTrue();
        ResultOf(redelivered, "cmd-1").Success.ShouldBeTrue();
        restartedRuntime.Starts.ShouldBe(0, "at most once across agent restarts");
    }

    [Fact]
    public async Task Hibernate_interrupted_after_it_took_effect_is_answered_succeeded_after_the_restart()
    {
        // The previous agent process recorded the hibernate, froze the session and saved its new state, and was killed
        // before it stored the result.
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("alice-xterm-hhhhhh"), TestContext.Current.CancellationToken);
        await runtime.HibernateAsync("alice-xterm-hhhhhh", TestContext.Current.CancellationToken);
        var killed = new StreamSpace.Agent.Commands.CommandDedupeStore(_state.Folder, TimeSpan.FromHours(24), TimeProvider.System, _log.CreateLogger("killed"));
        killed.Load([]);
        var hibernate = new CommandPayload { CommandId = "hib-1", Type = CommandTypes.SessionHibernate, SessionId = "alice-xterm-hhhhhh" };
        killed.Admit(hibernate, out _).ShouldBe(StreamSpace.Agent.Commands.CommandAdmission.Execute);

        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();
        connection.Hello.Inventory.ShouldBe([new SessionInventoryItem { SessionId = "alice-xterm-hhhhhh", State = ObservedStates.Hibernated }]);
        await connection.SendCommandAsync("hib-1", CommandTypes.SessionHibernate, "alice-xterm-hhhhhh");
        var received = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "hib-1"), Wait);

        // Failed, the control plane would put the session back to running while its desktop stays frozen.
        ResultOf(received, "hib-1").ShouldBe(new ResultPayload { CommandId = "hib-1", Success = true });
    }

    [Fact]
    public async Task Slow_session_start_never_delays_heartbeats_acks_or_other_sessions()
    {
        var runtime = new InstrumentedRuntime();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        runtime.HoldStart["slow-xterm-ssssss"] = release.Task;
        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();

        await connection.SendCommandAsync("slow-start", CommandTypes.SessionStart, "slow-xterm-ssssss", StartArgs.For("slow-xterm-ssssss"));
        await connection.SendCommandAsync("slow-stop", CommandTypes.SessionStop, "slow-xterm-ssssss");
        await connection.SendCommandAsync("fast-start", CommandTypes.SessionStart, "fast-xterm-ffffff", StartArgs.For("fast-xterm-ffffff"));

        var whileSlow = await connection.CollectAsync(r =>
            Has(r, MessageTypes.Result, "fast-start") && r.Count(e => e.Type == MessageTypes.Heartbeat) >= 2, Wait);
        Has(whileSlow, MessageTypes.Ack, "slow-start").ShouldBeTrue();
        Has(whileSlow, MessageTypes.Ack, "slow-stop").ShouldBeTrue();
        Has(whileSlow, MessageTypes.Ack, "fast-start").ShouldBeTrue();
        // Commands of one session run in order: the stop waits for the slow start.
        Has(whileSlow, MessageTypes.Result, "slow-start").ShouldBeFalse();
        Has(whileSlow, MessageTypes.Result, "slow-stop").ShouldBeFalse();

        release.SetResult();
        var after = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "slow-stop"), Wait);
        ResultOf(after, "slow-start").Success.ShouldBeTrue();
        ResultOf(after, "slow-stop").Success.ShouldBeTrue();
        after.FindIndex(e => e.Type == MessageTypes.Result && e.Payload.GetProperty("commandId").GetString() == "slow-start")
            .ShouldBeLessThan(after.FindIndex(e => e.Type == MessageTypes.Result && e.Payload.GetProperty("commandId").GetString() == "slow-stop"));
        runtime.Inventory().Select(s => s.SessionId).ShouldBe(["fast-xterm-ffffff"]);
    }

    [Fact]
    public async Task Stopping_waits_for_a_cancelled_start_to_clean_up_before_it_releases_the_state_folder()
    {
        var runtime = new InstrumentedRuntime { CleanupAfterCancel = TimeSpan.FromMilliseconds(700) };
        runtime.HoldStart["slow-xterm-cccccc"] = new TaskCompletionSource().Task; // never released: only the stop ends it
        var worker = await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();
        await connection.SendCommandAsync("held-start", CommandTypes.SessionStart, "slow-xterm-cccccc", StartArgs.For("slow-xterm-cccccc"));
        await connection.CollectAsync(r => Has(r, MessageTypes.Ack, "held-start"), Wait);
        // Acked on receipt; the runtime's start begins once the command is recorded.
        for (var waited = 0; runtime.Starts == 0; waited += 10)
        {
            waited.ShouldBeLessThan((int)Wait.TotalMilliseconds, "the held start began");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        await worker.StopAsync(TestContext.Current.CancellationToken);

        runtime.CleanedUp.Task.IsCompleted.ShouldBeTrue("the start's clean-up ended before the stop returned");
        // The folder is free again: a next agent on it starts.
        var next = await StartAgentAsync(new InstrumentedRuntime());
        await next.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Result_produced_while_disconnected_reaches_the_control_plane_after_reconnect()
    {
        var runtime = new InstrumentedRuntime();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        runtime.HoldStart["alice-xterm-rrrrrr"] = release.Task;
        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();
        await connection.SendCommandAsync("held", CommandTypes.SessionStart, "alice-xterm-rrrrrr", StartArgs.For("alice-xterm-rrrrrr"));
        (await connection.CollectAsync(r => Has(r, MessageTypes.Ack, "held"), Wait)).ShouldNotBeEmpty();

        await connection.CloseAsync(); // the control plane goes away while the start still runs
        release.SetResult();           // ... and the start finishes while the agent is disconnected

        var reconnected = await _cp.NextConnectionAsync();
        await reconnected.SendCommandAsync("held", CommandTypes.SessionStart, "alice-xterm-rrrrrr", StartArgs.For("alice-xterm-rrrrrr"));
        var received = await reconnected.CollectAsync(r => Has(r, MessageTypes.Result, "held") && Has(r, MessageTypes.Ack, "held"), Wait);
        received.Where(e => e.Type == MessageTypes.Result).Select(e => e.PayloadAs<ResultPayload>()).ShouldAllBe(r => r.CommandId == "held" && r.Success);
        runtime.Starts.ShouldBe(1);
    }

    [Fact]
    public async Task Observations_are_reported_as_session_status_and_bad_commands_fail_with_a_reason()
    {
        var runtime = new InstrumentedRuntime();
        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();

        await connection.SendCommandAsync("start", CommandTypes.SessionStart, "alice-xterm-oooooo", StartArgs.For("alice-xterm-oooooo"));
        await connection.SendCommandAsync("hibernate", CommandTypes.SessionHibernate, "alice-xterm-oooooo");
        await connection.SendCommandAsync("bogus", "session.teleport", "alice-xterm-oooooo");
        await connection.SendCommandAsync("no-args", CommandTypes.SessionStart, "x");
        await connection.SendCommandAsync("stop-unknown", CommandTypes.SessionStop, "never-existed");
        await connection.SendAsync("future.message", new { hello = "there" });

        var received = await connection.CollectAsync(r => new[] { "start", "hibernate", "bogus", "no-args", "stop-unknown" }.All(id => Has(r, MessageTypes.Result, id))
            && r.Count(e => e.Type == MessageTypes.SessionStatus) >= 2, Wait);
        var statuses = received.Where(e => e.Type == MessageTypes.SessionStatus).Select(e => e.PayloadAs<SessionStatusPayload>()).ToList();
        statuses.ShouldContain(new SessionStatusPayload { SessionId = "alice-xterm-oooooo", State = ObservedStates.Running });
        statuses.ShouldContain(new SessionStatusPayload { SessionId = "alice-xterm-oooooo", State = ObservedStates.Hibernated });
        ResultOf(received, "bogus").Error!.ShouldContain("unknown command type");
        ResultOf(received, "no-args").Error!.ShouldContain("args");
        ResultOf(received, "stop-unknown").Success.ShouldBeTrue("stopping an unknown session is success (idempotent)");
        _log.Contains("unknown type future.message").ShouldBeTrue();
    }

    [Fact]
    public async Task Refusal_is_logged_with_its_reason_and_retried_with_backoff_not_in_a_hot_loop()
    {
        _cp.Refuse = new RefusedPayload { Code = "unsupported_version", Reason = "protocol version 1 is not supported here" };
        // Jitter pinned to the top of the range: delays 0.5 s, 1 s, 2 s, ...
        await StartAgentAsync(new InstrumentedRuntime(), random: new FixedRandom(0.999));

        await Task.Delay(TimeSpan.FromSeconds(2.2), TestContext.Current.CancellationToken);

        _log.Contains("protocol version 1 is not supported here", LogLevel.Error).ShouldBeTrue();
        _log.Contains("unsupported_version").ShouldBeTrue();
        _cp.Attempts.ShouldBeInRange(2, 4);
    }

    /// <summary>Everything the agent sends on <paramref name="connection"/> until it closes it (within <see cref="Wait"/>), and how it closed it.</summary>
    private static async Task<(List<Envelope> Received, WebSocketClosedException Closed)> UntilClosedAsync(TestAgentConnection connection)
    {
        var received = new List<Envelope>();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var left = Wait - deadline.Elapsed;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"the agent kept the connection open; it sent: {string.Join(", ", received.Select(e => e.Type))}");
            try
            {
                received.Add(await connection.ReceiveAsync(left));
            }
            catch (WebSocketClosedException closed)
            {
                return (received, closed);
            }
        }
    }

    [Fact]
    public async Task Welcome_in_an_unsupported_protocol_version_is_logged_as_an_error_and_retried_with_backoff()
    {
        _cp.WelcomeVersion = ProtocolVersion.Current + 1;
        // Jitter pinned to the top of the range: delays 0.5 s, 1 s, 2 s, ...
        await StartAgentAsync(new InstrumentedRuntime(), random: new FixedRandom(0.999));
        var stopwatch = Stopwatch.StartNew();

        var first = await _cp.NextConnectionAsync();
        var (_, closed) = await UntilClosedAsync(first);
        closed.Status.ShouldBe(WebSocketCloseStatus.PolicyViolation);
        // Not left to the 10 s handshake timeout: closed at once, dialled again after the first backoff delay.
        await _cp.NextConnectionAsync(TimeSpan.FromSeconds(3));
        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3));
        _log.Contains("welcome message", LogLevel.Error).ShouldBeTrue();
        _log.Contains($"in protocol version {ProtocolVersion.Current + 1}; this agent speaks {ProtocolVersion.MinSupported}..{ProtocolVersion.Current}", LogLevel.Error).ShouldBeTrue();

        var left = TimeSpan.FromSeconds(2.2) - stopwatch.Elapsed;
        if (left > TimeSpan.Zero) await Task.Delay(left, TestContext.Current.CancellationToken);
        _cp.Attempts.ShouldBeInRange(2, 4, "backoff, not a hot loop");
    }

    [Fact]
    public async Task Command_in_an_unsupported_protocol_version_is_not_acked_and_ends_the_connection_which_is_dialled_again_with_backoff()
    {
        var runtime = new InstrumentedRuntime();
        await StartAgentAsync(runtime, random: new FixedRandom(0.999));
        var first = await _cp.NextConnectionAsync();

        await first.SendCommandAsync("from-the-future", CommandTypes.SessionStart, "alice-xterm-vvvvvv", StartArgs.For("alice-xterm-vvvvvv"),
            version: ProtocolVersion.Current + 1);
        var (received, closed) = await UntilClosedAsync(first);

        received.ShouldNotContain(e => e.Type == MessageTypes.Ack, "a command the agent cannot read is not acked");
        closed.Status.ShouldBe(WebSocketCloseStatus.PolicyViolation);
        _log.Contains("command message", LogLevel.Error).ShouldBeTrue();
        _log.Contains($"in protocol version {ProtocolVersion.Current + 1}; this agent speaks {ProtocolVersion.MinSupported}..{ProtocolVersion.Current}", LogLevel.Error).ShouldBeTrue();
        var second = await _cp.NextConnectionAsync(TimeSpan.FromSeconds(3));
        second.Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
        runtime.Starts.ShouldBe(0);
        _cp.Attempts.ShouldBe(2);
    }

    [Fact]
    public async Task Wrong_token_is_logged_as_rejected_and_never_welcomed()
    {
        await StartAgentAsync(new InstrumentedRuntime(), Options(token: "wrong"), new FixedRandom(0.999));
        await TestProcesses.WaitUntilAsync(() => _log.Contains("HTTP 401"), Wait, "the rejection to be logged");
        _cp.Attempts.ShouldBe(0);
        _log.Contains("wrong").ShouldBeFalse("the token never appears in logs");
    }

    [Fact]
    public async Task Agent_reconnects_quickly_after_the_control_plane_drops_it()
    {
        await StartAgentAsync(new InstrumentedRuntime());
        var first = await _cp.NextConnectionAsync();
        await first.CloseAsync();
        var stopwatch = Stopwatch.StartNew();
        var second = await _cp.NextConnectionAsync();
        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "first retry within 0.5 s");
        second.Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
    }

    [Fact]
    public async Task Control_plane_that_goes_silent_without_closing_is_given_up_on_after_the_keep_alive_timeout()
    {
        // The peer vanishes without FIN or RST (its node died, a NAT forgot the flow): only unanswered pings can tell.
        await using var proxy = new TcpProxy(new Uri(_cp.Url));
        var options = BehindProxy(proxy);
        var worker = await StartAgentAsync(new InstrumentedRuntime(), options);
        var first = await _cp.NextConnectionAsync();
        (await first.ReceiveAsync(Wait)).Type.ShouldBe(MessageTypes.Heartbeat);
        worker.Connected.ShouldBeTrue();

        proxy.SilenceOpenConnections();
        var stopwatch = Stopwatch.StartNew();
        var second = await _cp.NextConnectionAsync();
        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(3.5), "keep-alive interval + timeout (1.5 s), then at most 0.5 s of backoff");
        second.Hello.AgentId.ShouldBe(TestControlPlane.AgentId);
        proxy.Accepted.ShouldBe(2);
        _log.Contains("broke: ", LogLevel.Warning).ShouldBeTrue("the dead connection is reported");
    }

    [Fact]
    public async Task Command_the_state_folder_cannot_record_is_answered_failed_and_the_connection_stays_up()
    {
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("bob-xterm-ssssss"), TestContext.Current.CancellationToken);
        await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();
        _state.BreakCommandsFolder(); // disk full, read-only or gone: writing the command's record fails, also as root

        await connection.SendCommandAsync("unrecordable", CommandTypes.SessionStart, "alice-xterm-uuuuuu", StartArgs.For("alice-xterm-uuuuuu"));
        // Two heartbeats after the result: the same connection is still up a while later.
        var received = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "unrecordable")
            && r.Skip(r.FindIndex(e => e.Type == MessageTypes.Result)).Count(e => e.Type == MessageTypes.Heartbeat) >= 2, Wait);

        Has(received, MessageTypes.Ack, "unrecordable").ShouldBeTrue();
        var result = ResultOf(received, "unrecordable");
        result.Success.ShouldBeFalse();
        result.Error!.ShouldStartWith("the agent cannot record commands in its state folder: ");
        runtime.Starts.ShouldBe(1, "a start the agent cannot record is never executed (the one start is the test's own)");
        _cp.Attempts.ShouldBe(1, "no reconnect");

        // A stop still runs (a session filling its home fills the state folder: an admin's terminate must still end it).
        await connection.SendCommandAsync("unrecordable-stop", CommandTypes.SessionStop, "bob-xterm-ssssss");
        received = await connection.CollectAsync(r => Has(r, MessageTypes.Result, "unrecordable-stop"), Wait);
        ResultOf(received, "unrecordable-stop").ShouldBe(new ResultPayload { CommandId = "unrecordable-stop", Success = true });
        runtime.Inventory().ShouldBeEmpty();
    }

    [Fact]
    public async Task Connection_dropped_right_after_each_welcome_is_retried_with_growing_backoff_not_in_a_hot_loop()
    {
        _cp.CloseAfterWelcome = true;
        // Jitter pinned to the top of the range: delays 0.5 s, 1 s, 2 s, ... as long as no connection stays up a heartbeat (1 s).
        await StartAgentAsync(new InstrumentedRuntime(), random: new FixedRandom(0.999));

        await Task.Delay(TimeSpan.FromSeconds(2.6), TestContext.Current.CancellationToken);

        _cp.Attempts.ShouldBeInRange(2, 4);
    }

    [Fact]
    public async Task Session_that_ended_while_the_connection_broke_is_listed_ended_in_hellos_until_a_connection_that_carried_it_stayed_up()
    {
        await using var proxy = new TcpProxy(new Uri(_cp.Url));
        var options = BehindProxy(proxy);
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("alice-xterm-eeeeee"), TestContext.Current.CancellationToken);
        await runtime.StartAsync(StartArgs.For("bob-xterm-llllll"), TestContext.Current.CancellationToken);
        await runtime.StartAsync(StartArgs.For("carol-xterm-cccccc"), TestContext.Current.CancellationToken);
        await StartAgentAsync(runtime, options);
        var first = await _cp.NextConnectionAsync();
        await first.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Heartbeat), Wait);

        // The app exits, and another session is killed, just as the connection dies silently: their session.status go
        // into the void.
        proxy.SilenceOpenConnections();
        runtime.ExitApp("alice-xterm-eeeeee");
        runtime.Crash("carol-xterm-cccccc", "app killed by signal 15");

        // With why they ended: the control plane applies these before any status, so they must say it.
        var alice = new SessionInventoryItem { SessionId = "alice-xterm-eeeeee", State = ObservedStates.Exited, Reason = "app exited with code 0" };
        var carol = new SessionInventoryItem { SessionId = "carol-xterm-cccccc", State = ObservedStates.Crashed, Reason = "app killed by signal 15" };
        var second = await _cp.NextConnectionAsync();
        second.Hello.Inventory[0].ShouldBe(new SessionInventoryItem { SessionId = "bob-xterm-llllll", State = ObservedStates.Running });
        second.Hello.Inventory.Skip(1).OrderBy(i => i.SessionId, StringComparer.Ordinal).ShouldBe([alice, carol]);
        second.Hello.Capacity.ActiveSessions.ShouldBe(1, "an ended session takes no capacity");

        // Welcomed, but dropped at once: the control plane applies a hello's ended sessions after the welcome, so the
        // connection may have ended before it did. Still listed in the next hello.
        await second.CloseAsync();
        var third = await _cp.NextConnectionAsync();
        third.Hello.Inventory.ShouldContain(alice);
        third.Hello.Inventory.ShouldContain(carol);

        // A connection that carried it and stayed up long enough (twice keep-alive interval + timeout, 3 s here): the
        // control plane has it, so the hello after that lists only what runs.
        await third.CollectAsync(r => r.Count(e => e.Type == MessageTypes.Heartbeat) >= 5, TimeSpan.FromSeconds(15));
        await third.CloseAsync();
        var fourth = await _cp.NextConnectionAsync();
        fourth.Hello.Inventory.ShouldBe([new SessionInventoryItem { SessionId = "bob-xterm-llllll", State = ObservedStates.Running }]);
    }

    [Fact]
    public async Task Sessions_that_crashed_with_huge_reasons_while_disconnected_fit_the_next_hello_with_their_reasons_cut()
    {
        await using var proxy = new TcpProxy(new Uri(_cp.Url));
        var runtime = new InstrumentedRuntime();
        string[] ids = ["alice-xterm-aaaaaa", "bob-xterm-bbbbbb", "carol-xterm-cccccc"];
        foreach (var id in ids) await runtime.StartAsync(StartArgs.For(id), TestContext.Current.CancellationToken);
        await StartAgentAsync(runtime, BehindProxy(proxy));
        var first = await _cp.NextConnectionAsync();
        await first.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Heartbeat), Wait);

        // "Xvnc is gone: <the last lines of a log the session user writes>": 64 KiB each, every '<' six bytes in JSON
        // (\u003C), so three of them whole come to 1.2 MB, past the frame limit. A surrogate pair straddles the cut.
        proxy.SilenceOpenConnections();
        var log = "Xvnc is gone: " + new string('<', SessionInventoryItem.MaxReasonLength - 15) + "\U0001F600" + new string('<', 64 * 1024);
        foreach (var id in ids) runtime.Crash(id, log);

        var second = await _cp.NextConnectionAsync(TimeSpan.FromSeconds(15));
        second.Hello.Inventory.Select(i => i.SessionId).Order(StringComparer.Ordinal).ShouldBe(ids);
        foreach (var item in second.Hello.Inventory)
        {
            item.State.ShouldBe(ObservedStates.Crashed);
            item.Reason.ShouldBe(log[..(SessionInventoryItem.MaxReasonLength - 1)], "cut to what the control plane keeps, not inside the pair");
        }
        (await second.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Heartbeat), Wait))
            .ShouldContain(e => e.Type == MessageTypes.Heartbeat, "welcomed, and the connection runs");
    }

    [Theory]
    // Reasons of 1000 '<' (6000 bytes each in JSON): 200 of them do not fit, the 200 sessions without them do.
    [InlineData(200, 1000, 200)]
    // 20 000 sessions do not fit even without reasons: the oldest are left out, the rest fit.
    [InlineData(20_000, 0, 10_000)]
    public async Task A_hello_listing_more_ended_sessions_than_fit_a_frame_is_cut_to_fit_and_welcomed(int crashes, int reasonLength, int atLeastListed)
    {
        await using var proxy = new TcpProxy(new Uri(_cp.Url));
        var runtime = new InstrumentedRuntime();
        await StartAgentAsync(runtime, BehindProxy(proxy));
        var first = await _cp.NextConnectionAsync();
        await first.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Heartbeat), Wait);

        proxy.SilenceOpenConnections();
        var reason = reasonLength == 0 ? null : new string('<', reasonLength);
        for (var i = 0; i < crashes; i++) runtime.Crash($"crashed-session-{i:D6}", reason);

        var second = await _cp.NextConnectionAsync(TimeSpan.FromSeconds(20));
        second.Hello.Inventory.Count.ShouldBeInRange(atLeastListed, crashes);
        second.Hello.Inventory.ShouldAllBe(i => i.State == ObservedStates.Crashed && i.Reason == null);
        // Welcomed, and the connection runs (answering keep-alive pings: taking in the welcome of thousands is quick). The
        // first heartbeat follows every session.status queued while the agent was away, one frame each (20 000 of them,
        // each parsed by the test control plane): seconds on a loaded 2-core machine, so it gets three times the usual wait.
        await second.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Heartbeat), 3 * Wait);
    }

    [Fact]
    public async Task Ended_session_reported_on_a_connection_that_stayed_up_is_not_listed_in_later_hellos()
    {
        var options = Options();
        options.KeepAliveInterval = TimeSpan.FromMilliseconds(250);
        options.KeepAliveTimeout = TimeSpan.FromMilliseconds(500); // settled after 2 × 0.75 s
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("alice-xterm-ssssss"), TestContext.Current.CancellationToken);
        await StartAgentAsync(runtime, options);
        var first = await _cp.NextConnectionAsync();

        runtime.ExitApp("alice-xterm-ssssss");
        static bool IsExit(Envelope e) => e.Type == MessageTypes.SessionStatus && e.PayloadAs<SessionStatusPayload>().State == ObservedStates.Exited;
        // Three heartbeats (1 s apart) after the exit was written: longer than the settle time.
        await first.CollectAsync(r => r.Any(IsExit) && r.SkipWhile(e => !IsExit(e)).Count(e => e.Type == MessageTypes.Heartbeat) >= 3, Wait);

        await first.CloseAsync();
        var second = await _cp.NextConnectionAsync();
        second.Hello.Inventory.ShouldBeEmpty("reported on a connection that stayed up long enough: not kept forever");
    }

    [Fact]
    public async Task Ended_session_stays_listed_when_the_wall_clock_steps_forward_before_its_connection_settled_it()
    {
        var options = Options();
        options.KeepAliveInterval = TimeSpan.FromSeconds(5);
        options.KeepAliveTimeout = TimeSpan.FromSeconds(5); // settled after 2 × 10 s on this connection
        var clock = new SteppedWallClock();
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("alice-xterm-jjjjjj"), TestContext.Current.CancellationToken);
        var worker = new AgentWorker(options, runtime, _log, clock, Random.Shared);
        _workers.Add(worker);
        await worker.StartAsync(TestContext.Current.CancellationToken);
        var first = await _cp.NextConnectionAsync();

        runtime.ExitApp("alice-xterm-jjjjjj");
        await first.CollectAsync(r => r.Any(e => e.Type == MessageTypes.SessionStatus && e.PayloadAs<SessionStatusPayload>().State == ObservedStates.Exited), Wait);
        // NTP steps the wall clock an hour forward; two heartbeats later (each settles what is old enough) the connection drops.
        clock.Step(TimeSpan.FromHours(1));
        await first.CollectAsync(r => r.Count(e => e.Type == MessageTypes.Heartbeat) >= 2, Wait);
        await first.CloseAsync();

        var second = await _cp.NextConnectionAsync();
        second.Hello.Inventory.ShouldContain(i => i.SessionId == "alice-xterm-jjjjjj" && i.State == ObservedStates.Exited,
            "a couple of seconds on this connection are not the keep-alive's 20 s, whatever the wall clock says");
    }

    /// <summary>The wall clock as NTP may step it; the monotonic timestamp and timers go on as the system's.</summary>
    private sealed class SteppedWallClock : TimeProvider
    {
        private long _offsetTicks;

        public void Step(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);

        public override DateTimeOffset GetUtcNow() => base.GetUtcNow().AddTicks(Interlocked.Read(ref _offsetTicks));
    }

    [Fact]
    public async Task Drain_sends_a_draining_heartbeat_closes_cleanly_and_keeps_sessions()
    {
        var runtime = new InstrumentedRuntime();
        await runtime.StartAsync(StartArgs.For("alice-xterm-dddddd"), TestContext.Current.CancellationToken);
        var worker = await StartAgentAsync(runtime);
        var connection = await _cp.NextConnectionAsync();

        var stopping = worker.StopAsync(TestContext.Current.CancellationToken);
        var received = new List<Envelope>();
        var closed = await Should.ThrowAsync<WebSocketClosedException>(async () =>
        {
            while (true) received.Add(await connection.ReceiveAsync(Wait));
        });
        await stopping;

        closed.Status.ShouldBe(WebSocketCloseStatus.NormalClosure);
        received.Where(e => e.Type == MessageTypes.Heartbeat).Select(e => e.PayloadAs<HeartbeatPayload>())
            .ShouldContain(h => h.Draining && h.ActiveSessions == 1);
        worker.Draining.ShouldBeTrue();
        runtime.Inventory().Count.ShouldBe(1, "draining never kills sessions");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var worker in _workers)
        {
            await worker.StopAsync(CancellationToken.None);
            worker.Dispose();
        }
        await _cp.DisposeAsync();
        _state.Dispose();
    }
}
