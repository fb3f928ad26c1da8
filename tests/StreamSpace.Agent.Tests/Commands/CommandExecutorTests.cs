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

    private CommandExecutor Executor(int maxSessions = 5) =>
        new(_runtime, _store, _outbox, new AgentOptions { MaxSessions = maxSessions }, () => _draining, NullLogger.Instance);

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
    public async Task Stream_open_without_arguments_fails_with_a_reason()
    {
        var result = await RunAsync(Executor(), new CommandPayload { CommandId = "s1", Type = CommandTypes.StreamOpen, SessionId = "a" });
        result.Success.ShouldBeFalse();
        result.Error.ShouldNotBeNullOrWhiteSpace();
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
