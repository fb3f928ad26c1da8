using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Connection;
using StreamSpace.Agent.Hosting;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Commands;

/// <summary>
/// Runs commands off the read loop (invariant 8): commands of one session run one after another in arrival
/// order, commands of different sessions run in parallel. Each finished command's result is stored in the
/// dedupe store first (so a redelivery gets it even after a restart), then queued for sending.
/// </summary>
internal sealed class CommandExecutor
{
    private readonly ISessionRuntime _runtime;
    private readonly CommandDedupeStore _store;
    private readonly AgentOutbox _outbox;
    private readonly AgentOptions _options;
    private readonly Func<bool> _draining;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, Task> _tails = [];
    private readonly Lock _gate = new();
    /// <summary>Sessions whose start is under way: the runtime lists a session only once its launch finished.</summary>
    private readonly HashSet<string> _starting = [];
    private readonly SessionStreams _streams = new();

    public CommandExecutor(ISessionRuntime runtime, CommandDedupeStore store, AgentOutbox outbox, AgentOptions options, Func<bool> draining, ILogger logger, TimeProvider time)
    {
        _time = time;
        _runtime = runtime;
        _store = store;
        _outbox = outbox;
        _options = options;
        _draining = draining;
        _logger = logger;
    }

    /// <summary>Commands still queued or running.</summary>
    public int Pending
    {
        get
        {
            lock (_gate) return _tails.Count;
        }
    }

    /// <summary>
    /// Completes once every command queued or running now has finished, answered or given up (a start cancelled with the
    /// agent's lifetime first kills what it launched). Never faults: each command catches its own failures.
    /// </summary>
    public Task WhenIdleAsync()
    {
        lock (_gate) return Task.WhenAll(_tails.Values.ToArray());
    }

    /// <summary>
    /// Queues an admitted command behind earlier commands of the same session; returns at once. Past its
    /// <paramref name="deadline"/> (when it waited behind a slow command of its session, or in a socket while the
    /// network was down) it is not run but answered as expired: the control plane has given up on it and failed what it
    /// was for, so starting it then would only start a session nobody wants.
    /// </summary>
    public void Submit(CommandPayload command, CancellationToken ct, CommandDeadline? deadline = null)
    {
        var key = SessionKey(command);
        lock (_gate)
        {
            var previous = _tails.GetValueOrDefault(key, Task.CompletedTask);
            Task next = null!;
            next = Task.Run(async () =>
            {
                try
                {
                    await previous; // never throws: RunAsync catches everything
                    await RunAsync(command, deadline, ct);
                }
                finally
                {
                    lock (_gate)
                    {
                        if (_tails.TryGetValue(key, out var tail) && tail == next) _tails.Remove(key);
                    }
                }
            }, CancellationToken.None);
            _tails[key] = next;
        }
    }

    private async Task RunAsync(CommandPayload command, CommandDeadline? deadline, CancellationToken ct)
    {
        ResultPayload result;
        if (deadline is { } due && _time.GetTimestamp() >= due.Timestamp)
        {
            result = new ResultPayload { CommandId = command.CommandId, Success = false, Error = $"expired before the agent could run it (the control plane gave up on it at {due.ExpiresAt:O})" };
            _logger.LogWarning("Command {CommandId} ({Type}, session {SessionId}) not run: it expired at {ExpiresAt:O} (control plane's clock) before its turn came",
                command.CommandId, command.Type, command.SessionId, due.ExpiresAt);
            _store.Complete(result);
            _outbox.Post(MessageTypes.Result, result);
            return;
        }
        try
        {
            await ExecuteAsync(command, ct);
            result = new ResultPayload { CommandId = command.CommandId, Success = true };
            _logger.LogInformation("Command {CommandId} ({Type}, session {SessionId}) succeeded", command.CommandId, command.Type, command.SessionId);
        }
        catch (Exception ex) when (ex is SessionRuntimeException or ProtocolException or CommandRejectedException)
        {
            result = new ResultPayload { CommandId = command.CommandId, Success = false, Error = ex.Message };
            _logger.LogWarning("Command {CommandId} ({Type}, session {SessionId}) failed: {Error}", command.CommandId, command.Type, command.SessionId, ex.Message);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The agent is shutting down: the command stays "running" on disk and is answered as interrupted after a restart.
            return;
        }
        catch (Exception ex)
        {
            result = new ResultPayload { CommandId = command.CommandId, Success = false, Error = $"internal agent error: {ex.Message}" };
            _logger.LogError(ex, "Command {CommandId} ({Type}) failed unexpectedly", command.CommandId, command.Type);
        }
        _store.Complete(result);
        _outbox.Post(MessageTypes.Result, result);
    }

    private async Task ExecuteAsync(CommandPayload command, CancellationToken ct)
    {
        switch (command.Type)
        {
            case CommandTypes.SessionStart:
                var args = ReadArgs<SessionStartArgs>(command);
                if (_draining()) throw new CommandRejectedException("agent draining");
                ReserveSlot(args.SessionId);
                try
                {
                    await _runtime.StartAsync(args, ct);
                }
                finally
                {
                    // Started, the session is in the inventory now; failed, its slot is free again.
                    lock (_gate) _starting.Remove(args.SessionId);
                }
                break;
            case CommandTypes.SessionStop:
                var stopping = RequireSession(command);
                await _streams.CloseAsync(stopping, WebSocketCloseStatus.EndpointUnavailable, SessionStreams.StoppingReason);
                await _runtime.StopAsync(stopping, ct);
                break;
            case CommandTypes.SessionHibernate:
                // The streams end before the processes freeze: a frozen Xvnc would keep them open, showing a still desktop
                // as connected and queueing the viewer's input for wake. This session's stream.open commands run in this
                // queue too, so none can open a new one until the hibernate is done (and then the runtime refuses it).
                var hibernating = RequireSession(command);
                await _streams.CloseAsync(hibernating, WebSocketCloseStatus.EndpointUnavailable, SessionStreams.HibernatingReason);
                await _runtime.HibernateAsync(hibernating, ct);
                break;
            case CommandTypes.SessionWake:
                await _runtime.WakeAsync(RequireSession(command), ct);
                break;
            case CommandTypes.StreamOpen:
                await OpenStreamAsync(RequireSession(command), ReadArgs<StreamOpenArgs>(command), ct);
                break;
            case CommandTypes.HomeDelete:
                var userId = ReadArgs<HomeDeleteArgs>(command).UserId;
                if (string.IsNullOrWhiteSpace(userId)) throw new CommandRejectedException($"'{command.Type}' needs a userId");
                await _runtime.DeleteHomeAsync(userId, ct);
                break;
            default:
                throw new CommandRejectedException($"unknown command type '{command.Type}'");
        }
    }

    /// <summary>
    /// Counts <paramref name="sessionId"/> against <see cref="AgentOptions.MaxSessions"/> until its start ends, so starts of
    /// different sessions running at the same time cannot all pass the check. Starting a session that already runs is
    /// idempotent and takes no slot.
    /// </summary>
    private void ReserveSlot(string sessionId)
    {
        lock (_gate)
        {
            // Read under the lock: a start finishing now joins the inventory before it leaves _starting, so it is never missed.
            var running = _runtime.Inventory().Select(s => s.SessionId).ToHashSet();
            if (running.Contains(sessionId)) return;
            // A start that just finished is in both sets: it is counted once.
            var taken = running.Union(_starting).Count();
            if (taken >= _options.MaxSessions)
            {
                throw new CommandRejectedException($"agent full ({taken} of {_options.MaxSessions} sessions)");
            }
            _starting.Add(sessionId);
        }
    }

    /// <summary>
    /// Succeeds once the data socket is established and spliced to the session's VNC endpoint; the bytes
    /// then flow on their own task, so a long-lived stream never holds the executor or the reader. The pump
    /// is not tied to this command's token: it ends when either side closes, or when the session's hibernate
    /// or stop closes it (the bridge is in <see cref="_streams"/> before this command succeeds).
    /// </summary>
    private async Task OpenStreamAsync(string sessionId, StreamOpenArgs args, CancellationToken ct)
    {
        var bridge = await StreamBridge.ConnectAsync(
            new Uri(_options.ControlPlaneUrl), args, token => _runtime.ConnectVncAsync(sessionId, token), _logger, ct);
        _streams.Add(sessionId, bridge);
        _ = Task.Run(async () =>
        {
            await using (bridge)
            {
                try
                {
                    var outcome = await bridge.PumpAsync(CancellationToken.None);
                    _logger.LogInformation("Stream {StreamId} of session {SessionId} ended: {Outcome}", args.StreamId, sessionId, outcome);
                }
                finally
                {
                    _streams.Remove(sessionId, bridge);
                }
            }
        }, CancellationToken.None);
    }

    private static T ReadArgs<T>(CommandPayload command)
    {
        try
        {
            return command.Args.ValueKind == JsonValueKind.Object
                ? command.Args.Deserialize<T>(ProtocolJson.Options) ?? throw new CommandRejectedException($"'{command.Type}' needs args")
                : throw new CommandRejectedException($"'{command.Type}' needs args");
        }
        catch (JsonException ex)
        {
            throw new CommandRejectedException($"'{command.Type}' args are malformed: {ex.Message}");
        }
    }

    private static string RequireSession(CommandPayload command) =>
        string.IsNullOrWhiteSpace(command.SessionId) ? throw new CommandRejectedException($"'{command.Type}' needs a sessionId") : command.SessionId;

    private static string SessionKey(CommandPayload command)
    {
        if (!string.IsNullOrEmpty(command.SessionId)) return command.SessionId;
        if (command.Args.ValueKind == JsonValueKind.Object && command.Args.TryGetProperty("sessionId", out var id) && id.ValueKind == JsonValueKind.String)
        {
            return id.GetString()!;
        }
        return "command:" + command.CommandId;
    }
}

/// <summary>The agent will not run this command (bad args, draining, full, unknown type).</summary>
internal sealed class CommandRejectedException(string message) : Exception(message);
