using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// The stored token hash of agents, read per connection attempt (never cached: a deleted agent or a new token
/// takes effect at once). Lookups of agents connecting at the same moment, as after a control-plane restart,
/// share one query.
/// </summary>
public sealed class AgentTokenHashes : IAsyncDisposable
{
    private readonly Db _db;
    private readonly GroupCommitQueue<string, string?> _queue;

    public AgentTokenHashes(Db db)
    {
        _db = db;
        _queue = new GroupCommitQueue<string, string?>(QueryAsync, maxBatch: 1000);
    }

    /// <summary>The agent's token hash, or null when no such agent is registered.</summary>
    public Task<string?> FindAsync(string agentId, CancellationToken ct) => _queue.EnqueueAsync(agentId, ct).WaitAsync(ct);

    private async Task<IReadOnlyList<string?>> QueryAsync(IReadOnlyList<string> agentIds, CancellationToken ct)
    {
        var ids = agentIds.Distinct(StringComparer.Ordinal).ToArray();
        await using var conn = await _db.OpenAsync(ct);
        var hashes = (await conn.QueryAsync<(string AgentId, string TokenHash)>(new CommandDefinition(
                $"SELECT agent_id, token_hash FROM agents WHERE {(_db.IsPostgres ? "agent_id = ANY(@ids)" : "agent_id IN @ids")}",
                new { ids }, cancellationToken: ct)))
            .ToDictionary(r => r.AgentId, r => r.TokenHash, StringComparer.Ordinal);
        return agentIds.Select(id => hashes.GetValueOrDefault(id)).ToList();
    }

    public ValueTask DisposeAsync() => _queue.DisposeAsync();
}
