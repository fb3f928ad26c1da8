using Dapper;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using StreamSpace.Agent.Hosting;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Embedded;

/// <summary>
/// <c>STREAMSPACE_EMBEDDED_AGENT=true</c>: runs a local agent (process runtime) inside the control-plane
/// process. It registers itself with its own credential — a fresh token on every start, only its hash
/// stored — and speaks the same protocol over loopback as any standalone agent, so nothing in the hub
/// treats it specially.
/// </summary>
public sealed class EmbeddedAgentService(
    IOptions<StreamSpaceOptions> options, Db db, IServer server, TimeProvider time, IConfiguration configuration,
    ILoggerFactory loggerFactory, ILogger<EmbeddedAgentService> logger) : IHostedLifecycleService
{
    public const string AgentId = "local";
    public const string Region = "local";
    private EmbeddedAgentHost? _host;

    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.EmbeddedAgent) return;
        var baseUrl = LoopbackAddress();
        var token = AgentTokens.Generate();
        var now = time.GetUtcNow();
        await using (var conn = await db.OpenAsync(cancellationToken))
        {
            // Insert on first start; afterwards rotate the token and register the configured capacity and region again, so the
            // row says what the agent started below enforces (a changed StreamSpace__EmbeddedAgentMaxSessions included). An
            // admin's drain stays.
            await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                VALUES (@AgentId, @hash, 'offline', @platform, @region, @max, 0, @draining, @now, @now)
                ON CONFLICT (agent_id) DO UPDATE SET token_hash = @hash, region = @region, max_sessions = @max, updated_at = @now
                """,
                new { AgentId, hash = AgentTokens.Hash(token), platform = Platforms.Process, region = Region, max = options.Value.EmbeddedAgentMaxSessions, draining = false, now },
                cancellationToken: cancellationToken));
        }
        var agentOptions = SessionSettings(configuration);
        agentOptions.ControlPlaneUrl = baseUrl;
        agentOptions.AgentId = AgentId;
        agentOptions.Token = token;
        agentOptions.Runtime = Platforms.Process;
        agentOptions.HeartbeatSeconds = options.Value.HeartbeatSeconds;
        agentOptions.MaxSessions = options.Value.EmbeddedAgentMaxSessions;
        agentOptions.Region = Region;
        var (state, why) = StateFolderChoice.ForEmbedded(options.Value.DataFolder, agentOptions.StateFolder, Environment.IsPrivilegedProcess,
            agentOptions.SharedStateRoot);
        agentOptions.StateFolder = state;
        if (why is not null) logger.LogWarning("The embedded agent keeps its state (sessions, homes) in {State}, not in the data folder: {Why}", state, why);
        _host = await EmbeddedAgentHost.StartAsync(agentOptions, loggerFactory, cancellationToken);
        logger.LogInformation("Embedded local agent '{AgentId}' started against {Url} (state in {State})", AgentId, baseUrl, agentOptions.StateFolder);
    }

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        // Before Kestrel stops: the agent drains over its socket while it still can (sessions keep running).
        if (_host is not null) await _host.StopAsync(cancellationToken);
    }

    /// <summary>
    /// The embedded agent's session settings, read like a standalone agent's (README, "Agent process"):
    /// <c>STREAMSPACE_AGENT_STATE</c>, <c>STREAMSPACE_SESSION_LIMITS</c>, <c>STREAMSPACE_SESSION_MAX_PROCESSES</c>,
    /// <c>STREAMSPACE_SESSION_USER</c> and <c>…_PER_OWNER</c>, <c>STREAMSPACE_SESSION_WINDOW_MANAGER</c> (or the
    /// <c>StreamSpace:Agent</c> section, also for <c>SharedStateRoot</c>). Identity, runtime, capacity and region are the
    /// embedded agent's own and set by the caller. StateFolder is empty unless configured; a configured one is made now, or
    /// refused (<see cref="AgentOptionsException"/>) when it cannot be used, so the control plane stops before anything runs.
    /// </summary>
    internal static AgentOptions SessionSettings(IConfiguration configuration)
    {
        var configured = AgentOptions.FromConfiguration(configuration);
        if (AgentOptions.ConfiguredStateFolder(configuration) is { } folder)
            new AgentOptions { StateFolder = folder }.EnsureStateFolder();
        return new AgentOptions
        {
            StateFolder = AgentOptions.ConfiguredStateFolder(configuration) ?? "",
            SharedStateRoot = configured.SharedStateRoot,
            SessionUser = configured.SessionUser,
            SessionUserPerOwner = configured.SessionUserPerOwner,
            SessionLimits = configured.SessionLimits,
            SessionMaxProcesses = configured.SessionMaxProcesses,
            SessionWindowManager = configured.SessionWindowManager,
        };
    }

    /// <summary>The address the agent dials: the first listening address, with a wildcard host replaced by loopback.</summary>
    private string LoopbackAddress()
    {
        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var first = addresses.FirstOrDefault(a => a.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("The control plane has no listening address for the embedded agent");
        var uri = new UriBuilder(first);
        if (uri.Host is "0.0.0.0" or "[::]" or "::" or "+" or "*" or "localhost") uri.Host = "127.0.0.1";
        return uri.Uri.ToString().TrimEnd('/');
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
