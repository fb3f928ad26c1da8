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
    IOptions<StreamSpaceOptions> options, EmbeddedAgentFolder folder, Db db, IServer server, TimeProvider time,
    ILoggerFactory loggerFactory, ILogger<EmbeddedAgentService> logger) : IHostedLifecycleService
{
    public const string Region = "local";
    private EmbeddedAgentHost? _host;

    /// <summary>
    /// The hash of the token this host's embedded agent last registered, in its state folder. The folder is this host's
    /// alone (it holds the agent's sessions and is locked while the agent runs), so after a crash the row that still carries
    /// this hash is known to be this host's own agent from before, not another host's with the same id.
    /// </summary>
    public const string TokenHashFile = "embedded-token-hash";

    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        var baseUrl = LoopbackAddress();
        var token = AgentTokens.Generate();
        var agentId = options.Value.EmbeddedAgentId;
        var agentOptions = folder.Settings;
        agentOptions.ControlPlaneUrl = baseUrl;
        agentOptions.AgentId = agentId;
        agentOptions.Token = token;
        agentOptions.Runtime = Platforms.Process;
        agentOptions.HeartbeatSeconds = options.Value.HeartbeatSeconds;
        agentOptions.MaxSessions = options.Value.EmbeddedAgentMaxSessions;
        agentOptions.Region = Region;
        // Locked since the control plane was built (EmbeddedAgentFolder), so before the registration: only the host that holds
        // the folder may claim the row as its own, and a folder that belongs to another agent id was refused before that id's
        // row was touched. This service releases it from here on (the agent does once it started).
        var folderLock = folder.TakeLock();
        try
        {
            if (!await RegisterAsync(agentId, token, folderLock.ReadFile(TokenHashFile), cancellationToken))
            {
                folderLock.Dispose();
                return;
            }
            // After the commit: a crash in between leaves the previous hash here, and the restart waits out the offline timeout.
            folderLock.WriteFile(TokenHashFile, AgentTokens.Hash(token));
            foreach (var (variable, instead) in folder.IgnoredSettings)
                logger.LogWarning("{Variable} is set, but it is a standalone agent's setting and the embedded agent ignores it: {Instead}", variable, instead);
            if (folder.Why is not null)
                logger.LogWarning("The embedded agent keeps its state (sessions, homes) in {State}, not in the data folder: {Why}", agentOptions.StateFolder, folder.Why);
            _host = await EmbeddedAgentHost.StartAsync(agentOptions, folderLock, loggerFactory, cancellationToken);
        }
        catch
        {
            folderLock.Dispose();
            throw;
        }
        logger.LogInformation("Embedded local agent '{AgentId}' started against {Url} (state in {State})", agentId, baseUrl, agentOptions.StateFolder);
    }

    /// <summary>
    /// Inserts the agent row on first start; afterwards rotates the token and registers the configured capacity and region
    /// again, so the row says what the agent started here enforces (a changed StreamSpace__EmbeddedAgentMaxSessions
    /// included). An admin's drain stays. On PostgreSQL, where several replicas share the database, the row is taken only
    /// when no live connection holds it: a replica whose embedded agent has the same id (two hosts, both with the default
    /// <c>local</c>) would otherwise lock that agent out with a new token, and its first hello would fail the other host's
    /// sessions as lost while their processes kept running. A row that carries <paramref name="previousHash"/>, the token this
    /// host registered last (<see cref="TokenHashFile"/>), is this host's own agent from before a crash and is taken at once;
    /// another host never has that hash. Otherwise a row online but silent for the offline timeout is taken (this host's own
    /// agent whose hash was not stored), so the wait is bounded by that timeout; false (logged) when the row is still held then.
    /// </summary>
    private async Task<bool> RegisterAsync(string agentId, string token, string? previousHash, CancellationToken ct)
    {
        // The sweep's own idea of a dead connection (the heartbeat timeout plus the grace that covers heartbeat batching).
        var silence = options.Value.AgentOfflineAfter + options.Value.OfflineSweepGrace;
        var deadline = time.GetUtcNow() + silence;
        var waiting = false;
        while (true)
        {
            var now = time.GetUtcNow();
            await using (var conn = await db.OpenAsync(ct))
            {
                var registered = await conn.ExecuteAsync(new CommandDefinition(
                    $"""
                    INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                    VALUES (@agentId, @hash, 'offline', @platform, @region, @max, 0, @draining, @now, @now)
                    ON CONFLICT (agent_id) DO UPDATE SET token_hash = @hash, region = @region, max_sessions = @max, updated_at = @now
                    {(db.IsPostgres ? "WHERE agents.status <> @online OR agents.last_heartbeat IS NULL OR agents.last_heartbeat < @cutoff OR agents.token_hash = @previousHash" : "")}
                    """,
                    new
                    {
                        agentId, hash = AgentTokens.Hash(token), platform = Platforms.Process, region = Region, max = options.Value.EmbeddedAgentMaxSessions,
                        draining = false, now, online = AgentStatus.Online, cutoff = now - silence, previousHash,
                    },
                    cancellationToken: ct));
                if (registered > 0) return true;
            }
            if (now >= deadline)
            {
                logger.LogError(
                    "The embedded agent was not started: agent '{AgentId}' is online through another control plane sharing this database. " +
                    "Give each replica's embedded agent its own id (StreamSpace__EmbeddedAgentId), or run one embedded agent",
                    agentId);
                return false;
            }
            if (!waiting)
            {
                waiting = true;
                logger.LogWarning(
                    "Agent '{AgentId}' is online through another connection; the embedded agent waits up to {Silence} for it to go silent " +
                    "(this control plane's own agent from before a crash does)", agentId, silence);
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(options.Value.HeartbeatSeconds), time, ct);
            }
            catch (OperationCanceledException)
            {
                return false; // shutting down while it waited
            }
        }
    }

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        // Before Kestrel stops: the agent drains over its socket while it still can (sessions keep running).
        if (_host is not null) await _host.StopAsync(cancellationToken);
    }

    /// <summary>
    /// The embedded agent's settings, read as a standalone agent's are (README, "Agent process"): <c>STREAMSPACE_AGENT_STATE</c>,
    /// the <c>STREAMSPACE_SESSION_*</c> variables and the whole <c>StreamSpace:Agent</c> section (<c>Geometry</c>,
    /// <c>SessionLogMaxBytes</c>, <c>XvncPath</c>, <c>SharedStateRoot</c>, ...). Identity, runtime, capacity, region and
    /// heartbeat are the embedded agent's own and set by the caller. StateFolder is empty unless configured; a configured
    /// one is made now, or refused (<see cref="AgentOptionsException"/>) when it cannot be used, so the control plane stops
    /// before anything runs; so does any other setting the agent could not start with. Read once, by
    /// <see cref="EmbeddedAgentFolder.Claim"/>.
    /// </summary>
    /// <summary>
    /// A standalone agent's settings set for this process, which the embedded agent does not take (its identity, credential,
    /// address, runtime, capacity and region are its own): one warning each, naming what it uses instead, so a
    /// <c>STREAMSPACE_MAX_SESSIONS=50</c> meant for it does not pass for applied. Values are not repeated (one is a token).
    /// </summary>
    internal static IReadOnlyList<(string Variable, string Instead)> IgnoredStandaloneSettings(IConfiguration configuration, StreamSpaceOptions options)
    {
        var instead = new (string Variable, string Instead)[]
        {
            ("STREAMSPACE_AGENT_ID", $"its id is StreamSpace__EmbeddedAgentId ('{options.EmbeddedAgentId}')"),
            ("STREAMSPACE_AGENT_TOKEN", "it registers a token of its own at every start"),
            ("STREAMSPACE_CONTROL_PLANE", "it dials this control plane over loopback"),
            ("STREAMSPACE_RUNTIME", $"it always uses the {Platforms.Process} runtime"),
            ("STREAMSPACE_MAX_SESSIONS", $"its capacity is StreamSpace__EmbeddedAgentMaxSessions ({options.EmbeddedAgentMaxSessions})"),
            ("STREAMSPACE_REGION", $"its region is '{Region}'"),
        };
        return instead.Where(s => !string.IsNullOrEmpty(configuration[s.Variable])).ToList();
    }

    internal static AgentOptions SessionSettings(IConfiguration configuration)
    {
        var settings = AgentOptions.FromConfiguration(configuration);
        if (AgentOptions.ConfiguredStateFolder(configuration) is { } folder)
            new AgentOptions { StateFolder = folder }.EnsureStateFolder();
        // Not the standalone default (./data/agent-<STREAMSPACE_AGENT_ID>): unset, the data folder decides (EmbeddedAgentFolder).
        settings.StateFolder = AgentOptions.ConfiguredStateFolder(configuration) ?? "";
        // Here, not only when the agent starts: that is after the control plane listens and made its database.
        settings.ValidateExceptIdentity();
        return settings;
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
