using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Runtimes;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// Runs the agent inside another process (the control plane with STREAMSPACE_EMBEDDED_AGENT=true, contract §10).
/// It is the very same <see cref="AgentWorker"/> as the standalone agent, speaking the same protocol over loopback.
/// </summary>
public sealed class EmbeddedAgentHost : IAsyncDisposable
{
    private readonly AgentWorker _worker;
    private readonly ISessionRuntime _runtime;
    private int _stopped;

    private EmbeddedAgentHost(AgentWorker worker, ISessionRuntime runtime)
    {
        _worker = worker;
        _runtime = runtime;
    }

    public static Task<EmbeddedAgentHost> StartAsync(AgentOptions options, ILoggerFactory loggerFactory, CancellationToken ct) =>
        StartAsync(options, null, loggerFactory, ct);

    /// <summary>Starts on a state folder whose lock the caller holds already; the agent owns the lock once it started.</summary>
    public static async Task<EmbeddedAgentHost> StartAsync(AgentOptions options, StateFolderLock? folderLock, ILoggerFactory loggerFactory, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        options.EnsureStateFolder();
        var runtime = RuntimeFactory.Create(options, loggerFactory, TimeProvider.System);
        var worker = new AgentWorker(options, runtime, loggerFactory, TimeProvider.System, Random.Shared, folderLock);
        try
        {
            await worker.StartAsync(ct);
        }
        catch
        {
            worker.Dispose();
            await runtime.DisposeAsync();
            throw;
        }
        return new EmbeddedAgentHost(worker, runtime);
    }

    /// <summary>Drains: the control plane is told, sessions keep running.</summary>
    public async Task StopAsync(CancellationToken ct)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1) return;
        await _worker.StopAsync(ct);
        _worker.Dispose();
        await _runtime.DisposeAsync();
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None);
}
