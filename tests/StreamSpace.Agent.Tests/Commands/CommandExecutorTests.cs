using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamSpace.Agent.Commands;
using StreamSpace.Agent.Connection;
using StreamSpace.Agent.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Commands;

public class CommandExecutorTests : IDisposable
{
    private readonly TestState _state = new();
    private readonly InstrumentedRuntime _runtime = new();
    private readonly AgentOutbox _outbox = new(TimeProvider.System);
    private readonly CommandDedupeStore _store;
    private bool _draining;

    public CommandExecutorTests()
    {
        _store = new CommandDedupeStore(_state.Folder, TimeSpan.FromHours(24), TimeProvider.System, NullLogger.Instance);
        _store.Load([]);
    }

    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _time = new(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));

    private CommandExecutor Executor(int maxSessions = 5) =>
        new(_runtime, _store, _outbox, new AgentOptions { MaxSessions = maxSessions }, () => _draining, NullLogger.Instance, _time);

    private static CommandPayload Start(string id, string sessionId) => new()
    {
        CommandId = id,
        Type = CommandTypes.SessionStart,
        SessionId = sessionId,
        Args = JsonSerializer.SerializeToElement(StartArgs.For(sessionId), ProtocolJson.Options),
    };

    private async Task<ResultPayload> RunAsync(CommandExecutor executor, CommandPayload command)
    {
        _store.Admit(command, out _).ShouldBe(CommandAdmission.Execute);
        executor.Submit(command, TestContext.Current.CancellationToken);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        while (true)
        {
            var frame = await _outbox.Reader.ReadAsync(timeout.Token);
            if (frame.Envelope.Type == MessageTypes.Result && frame.Envelope.PayloadAs<ResultPayload>() is { } result && result.CommandId == command.CommandId)
            {
                return result;
            }
        }
    }

    private async Task<ResultPayload> NextResultAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        while (true)
        {
            var frame = await _outbox.Reader.ReadAsync(timeout.Token);
            if (frame.Envelope.Type == MessageTypes.Result) return frame.Envelope.PayloadAs<ResultPayload>();
        }
    }

    [Fact]
    public async Task Session_start_while_draining_fails_with_agent_draining()
    {
        _draining = true;
        var result = await RunAsync(Executor(), Start("c1", "alice-xterm-aaaaaa"));
        result.Success.ShouldBeFalse();
        result.Error.ShouldBe("agent draining");
        _runtime.Starts.ShouldBe(0);
        // The failure is stored: a redelivery gets the same answer without running anything.
        _store.Admit(Start("c1", "alice-xterm-aaaaaa"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Error.ShouldBe("agent draining");
    }

    [Fact]
    public async Task Session_start_beyond_capacity_fails_with_the_numbers()
    {
        var executor = Executor(maxSessions: 1);
        (await RunAsync(executor, Start("c1", "a-xterm-aaaaaa"))).Success.ShouldBeTrue();
        var full = await RunAsync(executor, Start("c2", "b-xterm-bbbbbb"));
        full.Success.ShouldBeFalse();
        full.Error.ShouldBe("agent full (1 of 1 sessions)");
        // Starting the session that already runs is still fine (idempotent), even when full.
        (await RunAsync(executor, Start("c3", "a-xterm-aaaaaa"))).Success.ShouldBeTrue();
    }

    [Fact]
    public async Task Starts_running_at_the_same_time_never_exceed_capacity_and_a_failed_one_frees_its_slot()
    {
        var executor = Executor(maxSessions: 1);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _runtime.HoldStart["a-xterm-aaaaaa"] = release.Task;
        _runtime.HoldStart["b-xterm-bbbbbb"] = release.Task;
        foreach (var start in new[] { Start("c1", "a-xterm-aaaaaa"), Start("c2", "b-xterm-bbbbbb") })
        {
            _store.Admit(start, out _).ShouldBe(CommandAdmission.Execute);
            executor.Submit(start, TestContext.Current.CancellationToken);
        }
        // Without a reservation both starts pass the capacity check and wait in the runtime; with it one is answered at once.
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            while (_runtime.Starts < 2 && !_outbox.Reader.TryPeek(out _)) await Task.Delay(10, timeout.Token);
        }
        release.SetResult();

        ResultPayload[] results = [await NextResultAsync(), await NextResultAsync()];
        results.Count(r => r.Success).ShouldBe(1);
        results.Single(r => !r.Success).Error.ShouldBe("agent full (1 of 1 sessions)");
        _runtime.Inventory().Count.ShouldBe(1);

        // A start that fails gives its slot back: once the running session is stopped, the next start is admitted.
        _runtime.HoldStart["d-xterm-dddddd"] = Task.FromException(new StreamSpace.Agent.Runtimes.SessionRuntimeException("no display free"));
        var stop = new CommandPayload { CommandId = "c3", Type = CommandTypes.SessionStop, SessionId = _runtime.Inventory().Single().SessionId };
        (await RunAsync(executor, stop)).Success.ShouldBeTrue();
        (await RunAsync(executor, Start("c4", "d-xterm-dddddd"))).Error.ShouldBe("no display free");
        (await RunAsync(executor, Start("c5", "e-xterm-eeeeee"))).Success.ShouldBeTrue();
    }

    [Fact]
    public async Task A_command_whose_time_ran_out_behind_a_slow_command_of_its_session_is_answered_expired_and_not_run()
    {
        var executor = Executor();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _runtime.HoldStart["a-xterm-aaaaaa"] = release.Task;
        var start = Start("c1", "a-xterm-aaaaaa");
        _store.Admit(start, out _).ShouldBe(CommandAdmission.Execute);
        executor.Submit(start, TestContext.Current.CancellationToken);
        var hibernate = new CommandPayload { CommandId = "c2", Type = CommandTypes.SessionHibernate, SessionId = "a-xterm-aaaaaa" };
        _store.Admit(hibernate, out _).ShouldBe(CommandAdmission.Execute);
        var expiresAt = new DateTimeOffset(2026, 3, 1, 13, 0, 0, TimeSpan.Zero);
        executor.Submit(hibernate, TestContext.Current.CancellationToken,
            new CommandDeadline(expiresAt, _time.GetTimestamp() + 5 * _time.TimestampFrequency));

        _time.Advance(TimeSpan.FromSeconds(6)); // the start takes longer than the hibernate may wait
        release.SetResult();
        (await NextResultAsync()).ShouldBe(new ResultPayload { CommandId = "c1", Success = true });
        var late = await NextResultAsync();
        late.ShouldBe(new ResultPayload { CommandId = "c2", Success = false,
            Error = "expired before the agent could run it (the control plane gave up on it at 2026-03-01T13:00:00.0000000+00:00)" });
        _runtime.Inventory().Single().State.ShouldBe(ObservedStates.Running, "the expired hibernate froze nothing");
        _store.Admit(hibernate, out var stored).ShouldBe(CommandAdmission.AlreadyFinished, "a redelivery gets the same answer");
        stored!.Error.ShouldBe(late.Error);

        // One with time left runs.
        var timely = new CommandPayload { CommandId = "c3", Type = CommandTypes.SessionHibernate, SessionId = "a-xterm-aaaaaa" };
        _store.Admit(timely, out _).ShouldBe(CommandAdmission.Execute);
        executor.Submit(timely, TestContext.Current.CancellationToken, new CommandDeadline(expiresAt, _time.GetTimestamp() + 5 * _time.TimestampFrequency));
        (await NextResultAsync()).ShouldBe(new ResultPayload { CommandId = "c3", Success = true });
        _runtime.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);
    }

    [Fact]
    public async Task Stream_open_without_arguments_fails_with_a_reason()
    {
        var result = await RunAsync(Executor(), new CommandPayload { CommandId = "s1", Type = CommandTypes.StreamOpen, SessionId = "a" });
        result.Success.ShouldBeFalse();
        result.Error.ShouldNotBeNullOrWhiteSpace();
    }

    [Fact]
    public async Task Home_delete_needs_no_session_and_hands_the_user_id_to_the_runtime()
    {
        var executor = Executor();
        var args = JsonSerializer.SerializeToElement(new HomeDeleteArgs { UserId = "3f2b9c0d5e6a4b1c8d7e6f5a4b3c2d1e" }, ProtocolJson.Options);
        var result = await RunAsync(executor, new CommandPayload { CommandId = "h1", Type = CommandTypes.HomeDelete, Args = args });
        result.ShouldBe(new ResultPayload { CommandId = "h1", Success = true });
        _runtime.DeletedHomes.ShouldBe(["3f2b9c0d5e6a4b1c8d7e6f5a4b3c2d1e"]);

        var missing = await RunAsync(executor, new CommandPayload { CommandId = "h2", Type = CommandTypes.HomeDelete,
            Args = JsonSerializer.SerializeToElement(new { userId = " " }, ProtocolJson.Options) });
        missing.Success.ShouldBeFalse();
        missing.Error.ShouldBe("'home.delete' needs a userId");
        (await RunAsync(executor, new CommandPayload { CommandId = "h3", Type = CommandTypes.HomeDelete })).Error.ShouldBe("'home.delete' needs args");
        _runtime.DeletedHomes.Count.ShouldBe(1);
    }

    [Fact]
    public async Task Result_the_state_folder_cannot_store_is_still_sent_and_kept_for_redeliveries()
    {
        var command = Start("c1", "alice-xterm-aaaaaa");
        _store.Admit(command, out _).ShouldBe(CommandAdmission.Execute);
        _state.BreakCommandsFolder();

        Executor().Submit(command, TestContext.Current.CancellationToken);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var frame = await _outbox.Reader.ReadAsync(timeout.Token);

        frame.Envelope.Type.ShouldBe(MessageTypes.Result);
        frame.Envelope.PayloadAs<ResultPayload>().ShouldBe(new ResultPayload { CommandId = "c1", Success = true });
        _runtime.Starts.ShouldBe(1);
        _store.Admit(command, out var stored).ShouldBe(CommandAdmission.AlreadyFinished, "kept in memory");
        stored!.Success.ShouldBeTrue();
    }

    public void Dispose() => _state.Dispose();
}
