using System.Text;
using StreamSpace.Agent.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Hosting;

/// <summary>
/// End to end with real parts: the embedded host (same worker as the standalone agent) with the process runtime,
/// a real xterm session started by a command, a drain that leaves it running, and a new agent that re-adopts it.
/// </summary>
public class EmbeddedAgentHostTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);
    private readonly TestState _state = new();
    private readonly TestLog _log = new();
    private TestControlPlane _cp = null!;

    public async ValueTask InitializeAsync() => _cp = await TestControlPlane.StartAsync();

    private AgentOptions Options() => new()
    {
        ControlPlaneUrl = _cp.Url,
        AgentId = TestControlPlane.AgentId,
        Token = TestControlPlane.Token,
        StateFolder = _state.Folder,
        Runtime = Platforms.Process,
        StopGracePeriod = TimeSpan.FromSeconds(2),
    };

    [Fact]
    public async Task Drained_agent_leaves_its_session_running_and_the_next_agent_reports_and_stops_it()
    {
        var sessionId = "alice-xterm-" + Guid.NewGuid().ToString("N")[..6];
        var first = await EmbeddedAgentHost.StartAsync(Options(), _log, TestContext.Current.CancellationToken);
        var connection = await _cp.NextConnectionAsync();
        connection.Hello.Platform.ShouldBe(Platforms.Process);
        connection.Hello.Inventory.ShouldBeEmpty();

        await connection.SendCommandAsync("start-1", CommandTypes.SessionStart, sessionId, StartArgs.For(sessionId));
        var started = await connection.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Result), Wait);
        var result = started.Single(e => e.Type == MessageTypes.Result).PayloadAs<ResultPayload>();
        result.Success.ShouldBeTrue(result.Error);
        started.ShouldContain(e => e.Type == MessageTypes.Ack);
        var pgid = _state.RecordedGroups().Single();

        await first.StopAsync(TestContext.Current.CancellationToken);
        await connection.CloseAsync();
        TestProcesses.Group(pgid).ShouldNotBeEmpty("a drained agent never kills its sessions");

        await using var second = await EmbeddedAgentHost.StartAsync(Options(), _log, TestContext.Current.CancellationToken);
        var reconnected = await _cp.NextConnectionAsync();
        reconnected.Hello.Inventory.ShouldBe([new SessionInventoryItem { SessionId = sessionId, State = ObservedStates.Running }]);

        await reconnected.SendCommandAsync("stop-1", CommandTypes.SessionStop, sessionId);
        static bool IsStoppedStatus(Envelope e) =>
            e.Type == MessageTypes.SessionStatus && e.PayloadAs<SessionStatusPayload>().State == ObservedStates.Stopped;
        var stopped = await reconnected.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Result) && r.Any(IsStoppedStatus), Wait);
        stopped.Single(e => e.Type == MessageTypes.Result).PayloadAs<ResultPayload>().Success.ShouldBeTrue();
        TestProcesses.Group(pgid).ShouldBeEmpty();
    }

    [Fact]
    public async Task An_agent_under_another_id_is_refused_on_the_state_folder_and_leaves_its_sessions_running()
    {
        var sessionId = "alice-xterm-" + Guid.NewGuid().ToString("N")[..6];
        var first = await EmbeddedAgentHost.StartAsync(Options(), _log, TestContext.Current.CancellationToken);
        var connection = await _cp.NextConnectionAsync();
        await connection.SendCommandAsync("start-1", CommandTypes.SessionStart, sessionId, StartArgs.For(sessionId));
        var started = await connection.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Result), Wait);
        started.Single(e => e.Type == MessageTypes.Result).PayloadAs<ResultPayload>().Success.ShouldBeTrue();
        var pgid = _state.RecordedGroups().Single();
        await first.StopAsync(TestContext.Current.CancellationToken);
        await connection.CloseAsync();

        // The host's agent id changed (StreamSpace__EmbeddedAgentId): its hello would list the session, which the control
        // plane has on the old id, and the session would be stopped as an orphan.
        var renamed = Options();
        renamed.AgentId = "renamed";
        var refused = await Should.ThrowAsync<AgentOptionsException>(() => EmbeddedAgentHost.StartAsync(renamed, _log, TestContext.Current.CancellationToken));

        refused.Message.ShouldStartWith(
            $"the agent state folder {Path.GetFullPath(_state.Folder)} belongs to agent '{TestControlPlane.AgentId}', not 'renamed': ");
        refused.Message.ShouldContain("STREAMSPACE_AGENT_STATE");
        _cp.Attempts.ShouldBe(1, "the refused agent never dialled, so no hello listed the session under another id");
        TestProcesses.Group(pgid).ShouldNotBeEmpty();

        // Under its own id again, the agent re-adopts the session (the refusal released the folder).
        await using var again = await EmbeddedAgentHost.StartAsync(Options(), _log, TestContext.Current.CancellationToken);
        var reconnected = await _cp.NextConnectionAsync();
        reconnected.Hello.Inventory.ShouldBe([new SessionInventoryItem { SessionId = sessionId, State = ObservedStates.Running }]);
        await reconnected.SendCommandAsync("stop-1", CommandTypes.SessionStop, sessionId);
        var stopped = await reconnected.CollectAsync(r => r.Any(e => e.Type == MessageTypes.Result), Wait);
        stopped.Single(e => e.Type == MessageTypes.Result).PayloadAs<ResultPayload>().Success.ShouldBeTrue();
    }

    [Fact]
    public async Task Invalid_options_are_refused_before_anything_starts()
    {
        var options = Options();
        options.Runtime = Platforms.Docker;
        (await Should.ThrowAsync<AgentOptionsException>(() => EmbeddedAgentHost.StartAsync(options, _log, TestContext.Current.CancellationToken)))
            .Message.ShouldContain("not built yet");
        _cp.Attempts.ShouldBe(0);
    }

    [Fact]
    public async Task A_state_folder_that_cannot_be_made_is_refused_before_anything_starts()
    {
        var notAFolder = Path.Combine(_state.Folder, "notadir");
        await File.WriteAllTextAsync(notAFolder, "a file", TestContext.Current.CancellationToken);
        var options = Options();
        options.StateFolder = Path.Combine(notAFolder, "state");

        var refused = await Should.ThrowAsync<AgentOptionsException>(() => EmbeddedAgentHost.StartAsync(options, _log, TestContext.Current.CancellationToken));

        refused.Message.ShouldStartWith($"invalid agent configuration: the state folder {options.StateFolder} cannot be used (");
        refused.Message.ShouldEndWith("STREAMSPACE_AGENT_STATE sets it");
        _cp.Attempts.ShouldBe(0);
    }

    public async ValueTask DisposeAsync()
    {
        await _cp.DisposeAsync();
        _state.Dispose();
    }
}
