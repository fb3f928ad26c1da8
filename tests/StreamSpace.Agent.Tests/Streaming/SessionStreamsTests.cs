using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamSpace.Agent.Commands;
using StreamSpace.Agent.Connection;
using StreamSpace.Agent.Hosting;
using StreamSpace.Agent.Runtimes.Process;
using StreamSpace.Agent.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Streaming;

/// <summary>
/// A session's open streams against its hibernate and stop: the executor with a real process runtime (Xvnc and xterm)
/// and real bridges, whose data sockets end at a test control plane that plays the viewer's side.
/// </summary>
public sealed class SessionStreamsTests : IAsyncDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    /// <summary>How soon a viewer must learn that its stream ended.</summary>
    private static readonly TimeSpan CloseWithin = TimeSpan.FromSeconds(5);
    private readonly TestState _state = new();
    private readonly TestLog _log = new();
    private readonly AgentOutbox _outbox = new(TimeProvider.System);
    private readonly Dictionary<string, ResultPayload> _results = [];
    private TestStreamEndpoint _endpoint = null!;
    private ProcessRuntime _runtime = null!;
    private CommandDedupeStore _store = null!;
    private CommandExecutor _executor = null!;

    private async Task StartAgentAsync()
    {
        _endpoint = await TestStreamEndpoint.StartAsync();
        var options = new AgentOptions
        {
            ControlPlaneUrl = _endpoint.Url,
            StateFolder = _state.Folder,
            StopGracePeriod = TimeSpan.FromSeconds(2),
            MonitorInterval = TimeSpan.FromMilliseconds(200),
        };
        _runtime = new ProcessRuntime(options, _log.CreateLogger(nameof(ProcessRuntime)), TimeProvider.System);
        await _runtime.InitializeAsync(TestContext.Current.CancellationToken);
        _store = new CommandDedupeStore(_state.Folder, TimeSpan.FromHours(24), TimeProvider.System, NullLogger.Instance);
        _store.Load([]);
        _executor = new CommandExecutor(_runtime, _store, _outbox, options, () => false, _log.CreateLogger(nameof(CommandExecutor)), TimeProvider.System);
    }

    private async Task<string> StartSessionAsync()
    {
        var args = StartArgs.For("alice-xterm-" + Guid.NewGuid().ToString("N")[..6]);
        await _runtime.StartAsync(args, TestContext.Current.CancellationToken);
        return args.SessionId;
    }

    private void Submit(string commandId, string type, string sessionId, object? args = null)
    {
        var command = new CommandPayload
        {
            CommandId = commandId,
            Type = type,
            SessionId = sessionId,
            Args = JsonSerializer.SerializeToElement(args ?? new { }, ProtocolJson.Options),
        };
        _store.Admit(command, out _).ShouldBe(CommandAdmission.Execute);
        _executor.Submit(command, TestContext.Current.CancellationToken);
    }

    private async Task<ResultPayload> ResultAsync(string commandId)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(40)); // a hibernate may wait up to 30 s for its processes
        while (!_results.ContainsKey(commandId))
        {
            var frame = await _outbox.Reader.ReadAsync(timeout.Token);
            if (frame.Envelope.Type == MessageTypes.Result && frame.Envelope.PayloadAs<ResultPayload>() is { } result) _results[result.CommandId] = result;
        }
        return _results[commandId];
    }

    /// <summary>Opens a stream of the session and reads Xvnc's RFB banner through it: a live bridge.</summary>
    private async Task<WebSocket> OpenStreamAsync(string sessionId, string streamId)
    {
        Submit("open-" + streamId, CommandTypes.StreamOpen, sessionId, TestStreamEndpoint.Args(streamId));
        var (_, socket) = await _endpoint.NextAsync(Wait);
        (await ResultAsync("open-" + streamId)).Success.ShouldBeTrue();
        Encoding.ASCII.GetString(await socket.ReadExactlyAsync(12, Wait)).ShouldStartWith("RFB 003.00");
        return socket;
    }

    /// <summary>Connections to the session's VNC socket, accepted or still waiting in its backlog (kernel's word, /proc/net/unix).</summary>
    private int VncConnections(string sessionId)
    {
        var socketPath = JsonDocument.Parse(File.ReadAllText(Path.Combine(_state.Folder, "sessions", sessionId, "session.json")))
            .RootElement.GetProperty("socketPath").GetString()!;
        return File.ReadLines("/proc/net/unix").Count(line => line.TrimEnd().EndsWith(" " + socketPath, StringComparison.Ordinal)) - 1; // less the listener
    }

    [Fact]
    public async Task Hibernate_closes_the_sessions_open_streams_with_the_reason_for_their_viewers()
    {
        await StartAgentAsync();
        var sessionId = await StartSessionAsync();
        var first = await OpenStreamAsync(sessionId, "st1");
        var second = await OpenStreamAsync(sessionId, "st2");

        Submit("hibernate", CommandTypes.SessionHibernate, sessionId);
        // Without this, the frozen Xvnc kept both streams open: viewers saw a still desktop as "Connected".
        foreach (var viewer in new[] { first, second })
        {
            var (status, reason) = await viewer.ReadUntilCloseAsync(CloseWithin);
            status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
            reason.ShouldBe("The session is being hibernated.");
        }
        (await ResultAsync("hibernate")).Success.ShouldBeTrue();
        _runtime.Inventory().Single().State.ShouldBe(ObservedStates.Hibernated);

        // Awake again, the session streams as before.
        Submit("wake", CommandTypes.SessionWake, sessionId);
        (await ResultAsync("wake")).Success.ShouldBeTrue();
        await OpenStreamAsync(sessionId, "st3");
    }

    [Fact]
    public async Task A_stream_open_queued_behind_a_hibernate_fails_with_the_reason_and_never_connects_to_the_stopped_Xvnc()
    {
        await StartAgentAsync();
        var sessionId = await StartSessionAsync();
        // The start's own readiness check talked to Xvnc: its connection is gone once Xvnc has seen it close.
        var settle = Stopwatch.StartNew();
        while (VncConnections(sessionId) > 0 && settle.Elapsed < Wait) await Task.Delay(20, TestContext.Current.CancellationToken);
        var before = VncConnections(sessionId);
        before.ShouldBe(0);

        // The viewer's stream.open arrives right behind the hibernate: it runs once the session's processes are stopped.
        Submit("hibernate", CommandTypes.SessionHibernate, sessionId);
        Submit("open-late", CommandTypes.StreamOpen, sessionId, TestStreamEndpoint.Args("late"));

        (await ResultAsync("hibernate")).Success.ShouldBeTrue();
        var open = await ResultAsync("open-late");
        open.Success.ShouldBeFalse("a stopped Xvnc takes the connection into its backlog and never answers it");
        open.Error.ShouldBe($"session {sessionId} is hibernated: wake it to view it");
        // The viewer waiting for the stream gets the reason, not a black "Connecting…" screen.
        var (_, viewer) = await _endpoint.NextAsync(Wait);
        var (status, reason) = await viewer.ReadUntilCloseAsync(CloseWithin);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        reason.ShouldBe("The session is hibernated.");
        VncConnections(sessionId).ShouldBe(before, "the agent connected to the stopped Xvnc");
    }

    [Fact]
    public async Task Stop_closes_the_sessions_open_stream_with_the_reason_for_its_viewer()
    {
        await StartAgentAsync();
        var sessionId = await StartSessionAsync();
        var viewer = await OpenStreamAsync(sessionId, "st1");

        Submit("stop", CommandTypes.SessionStop, sessionId);
        var (status, reason) = await viewer.ReadUntilCloseAsync(CloseWithin);
        status.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        reason.ShouldBe("The session is being stopped.");
        (await ResultAsync("stop")).Success.ShouldBeTrue();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_runtime is not null) await _runtime.DisposeAsync();
            if (_endpoint is not null) await _endpoint.DisposeAsync();
        }
        finally
        {
            _state.Dispose();
        }
    }
}
