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
    IOptions<StreamSpaceOptions> options, Db db, IServer server, TimeProvider time,
    ILoggerFactory loggerFactory, ILogger<EmbeddedAgentService> logger) : IHostedLifecycleService
{
    public const string AgentId = "local";
    private EmbeddedAgentHost? _host;

    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.EmbeddedAgent) return;
        var baseUrl = LoopbackAddress();
        var token = AgentTokens.Generate();
        var now = time.GetUtcNow();
        await using (var conn = await db.OpenAsync(cancellationToken))
        {
            // Insert on first start; afterwards only rotate the token (an admin's capacity or drain stays).
            await conn.ExecuteAsync(new CommandDefinition(
                """
                INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                VALUES (@AgentId, @hash, 'offline', @platform, 'local', @max, 0, @draining, @now, @now)
                ON CONFLICT (agent_id) DO UPDATE SET token_hash = @hash, updated_at = @now
                """,
                new { AgentId, hash = AgentTokens.Hash(token), platform = Platforms.Process, max = options.Value.EmbeddedAgentMaxSessions, draining = false, now },
                cancellationToken: cancellationToken));
        }
        var agentOptions = new AgentOptions
        {
            ControlPlaneUrl = baseUrl,
            AgentId = AgentId,
            Token = token,
            StateFolder = Path.Combine(options.Value.DataFolder, "agent-local"),
            Runtime = Platforms.Process,
            HeartbeatSeconds = options.Value.HeartbeatSeconds,
            MaxSessions = options.Value.EmbeddedAgentMaxSessions,
            Region = "local",
        };
        _host = await EmbeddedAgentHost.StartAsync(agentOptions, loggerFactory, cancellationToken);
        logger.LogInformation("Embedded local agent '{AgentId}' started against {Url} (state in {State})", AgentId, baseUrl, agentOptions.StateFolder);
    }

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        // Before Kestrel stops: the agent drains over its socket while it still can (sessions keep running).
        if (_host is not null) await _host.StopAsync(cancellationToken);
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
