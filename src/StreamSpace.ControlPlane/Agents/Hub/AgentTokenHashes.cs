using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// The stored token hash of agents, read per connection attempt (a deleted agent or a new token takes effect at
/// once); agents connecting at the same moment, as after a control-plane restart, share one query
/// (<see cref="KeyedLookup{TRow}"/>).
/// </summary>
public sealed class AgentTokenHashes(Db db) : IAsyncDisposable
{
    private readonly KeyedLookup<Credential> _credentials =
        new(db, "agents", "agent_id", "agent_id AS AgentId, token_hash AS TokenHash", c => c.AgentId, maxBatch: 1000);

    /// <summary>The agent's token hash, or null when no such agent is registered.</summary>
    public async Task<string?> FindAsync(string agentId, CancellationToken ct) => (await _credentials.FindAsync(agentId, ct))?.TokenHash;

    public ValueTask DisposeAsync() => _credentials.DisposeAsync();

    // Property-mapped, as Dapper maps rows onto classes.
    private sealed class Credential
    {
        public string AgentId { get; init; } = "";
        public string TokenHash { get; init; } = "";
    }
}
