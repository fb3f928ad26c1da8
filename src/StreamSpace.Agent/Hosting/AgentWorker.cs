using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Commands;
using StreamSpace.Agent.Connection;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// The agent: keeps one control connection to the control plane alive (reconnecting with full-jitter backoff,
/// reset once a connection stayed up for a heartbeat interval), executes commands at most once and reports observations. On shutdown it
/// drains: refuses new sessions, tells the control plane, closes the socket cleanly and leaves every running
/// session alive for the next agent process to re-adopt. It holds its state folder's lock from start to stop, so a second
/// agent on the same folder is refused. The standalone agent and the embedded one run this.
/// </summary>
public sealed class AgentWorker : BackgroundService
{
    private static readonly TimeSpan PruneInterval = TimeSpan.FromHours(1);

    private readonly AgentOptions _options;
    private readonly ISessionRuntime _runtime;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly AgentOutbox _outbox;
    private readonly EndedSessions _ended = new();
    private readonly CommandDedupeStore _store;
    private readonly Backoff _backoff;
    private readonly CancellationTokenSource _lifetime = new();
    private CommandExecutor? _executor;
    private StateFolderLock? _folderLock;
    private volatile ControlConnection? _connection;
    private volatile bool _draining;

    public AgentWorker(AgentOptions options, ISessionRuntime runtime, ILoggerFactory loggerFactory, TimeProvider time)
        : this(options, runtime, loggerFactory, time, Random.Shared)
    {
    }

    /// <param name="folderLock">The state folder's lock when the caller took it already (the embedded agent, which must hold
    /// it before it registers); the worker owns it from here on.</param>
    internal AgentWorker(AgentOptions options, ISessionRuntime runtime, ILoggerFactory loggerFactory, TimeProvider time, Random random,
        StateFolderLock? folderLock = null)
    {
        _folderLock = folderLock;
        _options = options;
        _runtime = runtime;
        _time = time;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<AgentWorker>();
        _outbox = new AgentOutbox(time);
        _store = new CommandDedupeStore(options.StateFolder, options.CommandRetention, time, loggerFactory.CreateLogger<CommandDedupeStore>());
        _backoff = new Backoff(options.ReconnectMinDelay, options.ReconnectMaxDelay, random);
    }

    /// <summary>True once a shutdown began: session.start is refused with "agent draining".</summary>
    public bool Draining => _draining;

    /// <summary>Connected and welcomed right now.</summary>
    public bool Connected => _connection?.ConnectionId is not null;

    /// <summary>Re-adopts sessions and loads the dedupe store before the first hello, so both are complete.</summary>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_options.StateFolder);
        // Before anything reads the folder: a second agent on it, or one with another id, must not adopt its sessions.
        _folderLock ??= StateFolderLock.Acquire(_options.StateFolder, _options.AgentId);
        _folderLock.RecordOwner();
        if (_runtime.Platform == Platforms.Simulated)
        {
            _logger.LogWarning("SIMULATED runtime: sessions are in-memory records, nothing really runs. For load tests only");
        }
        await _runtime.InitializeAsync(cancellationToken);
        _store.Load(_runtime.Inventory()); // after re-adoption: an interrupted hibernate or wake is answered from it
        _executor = new CommandExecutor(_runtime, _store, _outbox, _options, () => _draining, _loggerFactory.CreateLogger<CommandExecutor>(), _time);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _lifetime.Token);
        var ct = linked.Token;
        var observations = ForwardObservationsAsync(ct);
        var pruning = PruneLoopAsync(ct);
        _logger.LogInformation("Agent {AgentId} ({Platform}, region {Region}, max {MaxSessions} sessions) connecting to {Url}",
            _options.AgentId, _runtime.Platform, _options.Region, _options.MaxSessions, _options.ControlPlaneUrl);
        while (!ct.IsCancellationRequested && !_draining)
        {
            var connection = new ControlConnection(_options, _runtime, _store, _executor!, _outbox, _ended, () => _draining,
                _loggerFactory.CreateLogger<ControlConnection>(), _time, ct);
            _connection = connection;
            try
            {
                await connection.RunAsync(_backoff.Reset, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            catch (Exception ex)
            {
                // Whatever broke this connection, the agent dials again: only shutting down ends the loop.
                _logger.LogError(ex, "Control connection failed unexpectedly");
            }
            finally
            {
                _connection = null;
                await connection.DisposeAsync();
            }
            if (ct.IsCancellationRequested || _draining) break;
            var delay = _backoff.NextDelay();
            _logger.LogInformation("Reconnecting in {Delay} ms (attempt {Attempt})", (int)delay.TotalMilliseconds, _backoff.Attempt);
            try
            {
                await Task.Delay(delay, _time, ct);
            }
            catch (OperationCanceledException)
            {
            }
        }
        await Task.WhenAll(observations, pruning);
    }

    /// <summary>Graceful drain (SIGTERM/Ctrl-C or the embedded host stopping).</summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        if (!_draining)
        {
            _draining = true;
            _logger.LogInformation("Agent {AgentId} draining: no new sessions; {Sessions} running sessions are left running",
                _options.AgentId, _runtime.Inventory().Count);
            if (_connection is { } connection)
            {
                await connection.CloseForDrainAsync(cancellationToken);
            }
        }
        await _lifetime.CancelAsync();
        await base.StopAsync(cancellationToken);
        // Commands still running were cancelled with the agent's lifetime; what they do on the way out (a start given up
        // kills what it launched and removes its cgroups) ends before the folder is released, so a next agent on it (an
        // embedded one restarting in this process) never re-adopts while it runs, nor does the process exit halfway.
        if (_executor is { } executor)
        {
            try
            {
                await executor.WhenIdleAsync().WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                _logger.LogWarning("Agent {AgentId} stopped before {Count} command(s) finished", _options.AgentId, executor.Pending);
            }
        }
        // Stopped: the next agent on this folder (a restart, in this process or another) may start.
        Interlocked.Exchange(ref _folderLock, null)?.Dispose();
    }

    private async Task ForwardObservationsAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var status in _runtime.Observations.ReadAllAsync(ct))
            {
                // Before the post, so the hello after a broken connection lists an ended session even if this frame is lost.
                _ended.Observed(status, _time.GetTimestamp());
                _outbox.Post(MessageTypes.SessionStatus, status);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task PruneLoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(PruneInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                _store.Prune();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public override void Dispose()
    {
        Interlocked.Exchange(ref _folderLock, null)?.Dispose();
        _lifetime.Dispose();
        base.Dispose();
    }
}
