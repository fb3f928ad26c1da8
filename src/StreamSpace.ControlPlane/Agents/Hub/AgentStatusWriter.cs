using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// The only writer of <c>agents.status</c> (invariant 1). Online at hello and offline at close are
/// written at once; heartbeats are buffered and written in one transaction per flush, never one
/// UPDATE per heartbeat. Every write is conditional on the connection id that owns the row, and
/// flushes and offline writes are serialized by one gate, so a buffered heartbeat can never bring
/// back a connection that was just marked offline. The agent's own drain (<c>agent_draining</c>) is what its latest
/// hello or heartbeat says, so a restarted agent saying <c>draining: false</c> clears the drain it reported while it
/// stopped; an admin's drain (<c>draining</c>, POST /api/v1/agents/{id}/drain) is never written here. Likewise the capacity the
/// agent reports (<c>reported_capacity</c>) is what its latest hello or heartbeat says, while the registered maximum
/// (<c>max_sessions</c>) and region, an admin's, are never written here. A hello marks
/// the agent online only while the token that authenticated its socket is still the agent's token (a rotation
/// between the upgrade and the hello refuses it).
/// </summary>
public sealed class AgentStatusWriter(
    Db db, AgentConnectionRegistry registry, HubMetrics metrics, IOptions<StreamSpaceOptions> options, ILogger<AgentStatusWriter> logger) : IDisposable, IAsyncDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private GroupCommitQueue<PendingHello, OnlineMark>? _hellosQueue;

    private GroupCommitQueue<PendingHello, OnlineMark> Hellos
    {
        get
        {
            lock (_pendingLock) return _hellosQueue ??= new(WriteHellosAsync, maxBatch: 1000);
        }
    }
    private readonly Lock _pendingLock = new();

    /// <summary>Hellos waiting for their online write or in one that runs now (for tests).</summary>
    internal int HellosPending => Volatile.Read(ref _hellosQueue)?.Pending ?? 0;
    private Dictionary<string, PendingHeartbeat> _pending = new(StringComparer.Ordinal);

    /// <summary>
    /// Marks the agent online for <paramref name="connection"/>. Hellos arriving together (a reconnect storm after a
    /// restart) are written by one set-based UPDATE. <see cref="OnlineMark.Registered"/> is false when the agent row no
    /// longer exists or no longer holds the token that authenticated the connection (rotated meanwhile), or (<see cref="OnlineMark.Superseded"/>) when a newer hello of the same agent came in the same batch;
    /// <see cref="OnlineMark.HasLiveSessions"/> says whether any live session is placed on the agent.
    /// The caller may stop waiting (<paramref name="ct"/>), but a batch that already took the hello still commits it:
    /// <see cref="AgentConnection.OnlineWrite"/> is the write itself, which the connection's cleanup waits for before its
    /// offline write.
    /// </summary>
    public Task<OnlineMark> MarkOnlineAsync(AgentConnection connection, HelloPayload hello, DateTimeOffset now, CancellationToken ct)
    {
        var write = Hellos.EnqueueAsync(new PendingHello(connection, hello, now), ct);
        connection.OnlineWrite = write;
        return write.WaitAsync(ct);
    }

    private async Task<IReadOnlyList<OnlineMark>> WriteHellosAsync(IReadOnlyList<PendingHello> hellos, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            if (db.IsPostgres) return await WritePgHellosAsync(hellos, ct);
            await using var conn = await db.OpenAsync(ct);
            var results = new List<OnlineMark>(hellos.Count);
            foreach (var h in hellos)
            {
                var row = (await conn.QueryAsync<(bool Live, int MaxSessions, string Region)>(new CommandDefinition(
                    $"""
                    UPDATE agents SET status = @online, connection_id = @connectionId, connected_at = @now, last_heartbeat = @now,
                        version = @version, agent_draining = @draining, active_sessions = @active, reported_capacity = @capacity,
                        platform = @platform, session_limits = @limits, updated_at = @now
                    WHERE agent_id = @agentId AND token_hash = @tokenHash
                    RETURNING {LiveOn("agents.agent_id")}, max_sessions, region
                    """,
                    new
                    {
                        online = AgentStatus.Online, connectionId = h.Connection.ConnectionId, now = h.At, version = h.Hello.Version, draining = h.Hello.Draining,
                        active = h.Hello.Capacity.ActiveSessions, capacity = h.Hello.Capacity.MaxSessions, platform = h.Hello.Platform, agentId = h.Connection.AgentId,
                        limits = h.Hello.SessionLimits, tokenHash = h.Connection.TokenHash,
                    },
                    cancellationToken: ct))).ToList();
                results.Add(row.Count == 1 ? new OnlineMark(true, row[0].Live, MaxSessions: row[0].MaxSessions, Region: row[0].Region) : new OnlineMark(false, false));
            }
            return results;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Whether any live session is placed on <paramref name="agent"/>: its live-session counter (kept by the triggers on
    /// <c>sessions</c>, migrations M0004/M0005), one row. An EXISTS over the agent's sessions read every session it ever
    /// had when none is live (the agent index holds no state), on every hello.
    /// </summary>
    internal static string LiveOn(string agent) =>
        $"EXISTS (SELECT 1 FROM agent_live_sessions l WHERE l.agent_id = {agent} AND l.live > 0)";

    /// <summary>
    /// The PostgreSQL hello batch: one set-based UPDATE. Its rows are locked first, in agent-id order (the order placement
    /// and <see cref="FlushAsync"/> lock them in): the UPDATE alone locked them in the order its join found them, so a batch
    /// holding one agent while waiting for another deadlocked with a create holding the other, and the whole batch failed.
    /// A deadlock with any other writer is run again (<see cref="Db.InTransactionAsync{T}"/>).
    /// </summary>
    private async Task<IReadOnlyList<OnlineMark>> WritePgHellosAsync(IReadOnlyList<PendingHello> hellos, CancellationToken ct)
    {
        // The same agent twice in one batch (a reconnect racing its predecessor): the later hello wins, as it would one by one.
        var last = hellos.Select((h, i) => (h, i)).GroupBy(x => x.h.Connection.AgentId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last().i, StringComparer.Ordinal);
        var rows = hellos.Where((h, i) => last[h.Connection.AgentId] == i).ToList();
        var args = new
        {
            online = AgentStatus.Online,
            ids = rows.Select(h => h.Connection.AgentId).ToArray(), connections = rows.Select(h => h.Connection.ConnectionId).ToArray(),
            ats = rows.Select(h => h.At.ToUniversalTime()).ToArray(), versions = rows.Select(h => h.Hello.Version).ToArray(),
            drains = rows.Select(h => h.Hello.Draining).ToArray(), actives = rows.Select(h => h.Hello.Capacity.ActiveSessions).ToArray(),
            capacities = rows.Select(h => h.Hello.Capacity.MaxSessions).ToArray(), platforms = rows.Select(h => h.Hello.Platform).ToArray(),
            limits = rows.Select(h => h.Hello.SessionLimits).ToArray(), hashes = rows.Select(h => h.Connection.TokenHash).ToArray(),
        };
        var marked = await db.InTransactionAsync(async (conn, tx) => (await conn.QueryAsync<(string AgentId, bool Live, int MaxSessions, string Region)>(new CommandDefinition(
            $"""
            WITH locked AS (
                SELECT agent_id FROM agents WHERE agent_id = ANY(@ids) ORDER BY agent_id FOR NO KEY UPDATE)
            UPDATE agents a SET status = @online, connection_id = v.connection_id, connected_at = v.at, last_heartbeat = v.at,
                version = v.version, agent_draining = v.draining, active_sessions = v.active, reported_capacity = v.capacity,
                platform = v.platform, session_limits = v.session_limits, updated_at = v.at
            FROM unnest(@ids, @connections, @ats, @versions, @drains, @actives, @capacities, @platforms, @limits, @hashes)
                AS v(agent_id, connection_id, at, version, draining, active, capacity, platform, session_limits, token_hash)
            WHERE a.agent_id = v.agent_id AND a.token_hash = v.token_hash
              AND a.agent_id IN (SELECT agent_id FROM locked)
            RETURNING a.agent_id, {LiveOn("a.agent_id")}, a.max_sessions, a.region
            """,
            args, tx, cancellationToken: ct))).ToDictionary(r => r.AgentId, StringComparer.Ordinal), ct);
        // An earlier hello of the same agent in this batch is superseded by the later one before it was written.
        return hellos.Select((h, i) => last[h.Connection.AgentId] != i ? new OnlineMark(false, false, Superseded: true)
            : marked.TryGetValue(h.Connection.AgentId, out var m) ? new OnlineMark(true, m.Live, MaxSessions: m.MaxSessions, Region: m.Region) : new OnlineMark(false, false)).ToList();
    }

    /// <summary>Buffers "heard now" for the next flush, with the connection's latest capacity figures.</summary>
    public void Record(AgentConnection connection, DateTimeOffset at)
    {
        lock (_pendingLock)
            _pending[connection.AgentId] = new PendingHeartbeat(connection, at, connection.Draining, connection.ActiveSessions, connection.ReportedCapacity);
    }

    /// <summary>
    /// Marks the agent offline if <paramref name="connectionId"/> still owns its row. Must be called after
    /// the connection left the registry, so no later flush can write it back. False when the row names another connection (or none).
    /// </summary>
    public async Task<bool> MarkOfflineAsync(string agentId, string connectionId, DateTimeOffset now, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            lock (_pendingLock)
            {
                if (_pending.TryGetValue(agentId, out var p) && p.Connection.ConnectionId == connectionId) _pending.Remove(agentId);
            }
            await using var conn = await db.OpenAsync(ct);
            return await conn.ExecuteAsync(new CommandDefinition(
                """
                UPDATE agents SET status = @offline, connection_id = NULL, updated_at = @now
                WHERE agent_id = @agentId AND connection_id = @connectionId
                """,
                new { offline = AgentStatus.Offline, now, agentId, connectionId }, cancellationToken: ct)) > 0;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Writes all buffered heartbeats in one transaction. Returns the connections whose row no longer
    /// names them (agent deleted, or a newer connection on another replica took over): they must close.
    /// A write that fails (the database is away) keeps its heartbeats for the next flush, behind any newer one
    /// recorded meanwhile: thrown away, the rows of agents that kept heartbeating through an outage stayed as old as
    /// the outage, and the sweep (<see cref="SweepStaleAsync"/>) took them for silent once the database was back.
    /// </summary>
    public async Task<IReadOnlyList<AgentConnection>> FlushAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            Dictionary<string, PendingHeartbeat> batch;
            lock (_pendingLock)
            {
                if (_pending.Count == 0) return [];
                batch = _pending;
                _pending = new Dictionary<string, PendingHeartbeat>(StringComparer.Ordinal);
            }
            var live = batch.Values.Where(p => registry.IsCurrent(p.Connection.AgentId, p.Connection.ConnectionId)).ToList();
            if (live.Count == 0) return [];

            // Rows are locked in agent-id order, the order placement locks them in, so a flush and a
            // session create never deadlock; PostgreSQL gets one set-based statement per batch.
            live.Sort((a, b) => string.CompareOrdinal(a.Connection.AgentId, b.Connection.AgentId));
            try
            {
                return await WriteHeartbeatsAsync(live, ct);
            }
            catch
            {
                lock (_pendingLock)
                {
                    foreach (var p in live) _pending.TryAdd(p.Connection.AgentId, p);
                }
                throw;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<IReadOnlyList<AgentConnection>> WriteHeartbeatsAsync(List<PendingHeartbeat> live, CancellationToken ct)
    {
        var written = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (db.IsPostgres)
            {
                var updated = await conn.QueryAsync<string>(new CommandDefinition(
                    """
                    WITH locked AS (
                        SELECT agent_id FROM agents WHERE agent_id = ANY(@ids) ORDER BY agent_id FOR NO KEY UPDATE)
                    UPDATE agents a SET status = @online, last_heartbeat = v.at, agent_draining = v.draining,
                        active_sessions = v.active, reported_capacity = v.capacity, updated_at = v.at
                    FROM unnest(@ids, @connections, @ats, @drains, @actives, @capacities) AS v(agent_id, connection_id, at, draining, active, capacity)
                    WHERE a.agent_id = v.agent_id AND a.connection_id = v.connection_id
                      AND a.agent_id IN (SELECT agent_id FROM locked)
                    RETURNING a.agent_id
                    """,
                    new
                    {
                        online = AgentStatus.Online,
                        ids = live.Select(p => p.Connection.AgentId).ToArray(),
                        connections = live.Select(p => p.Connection.ConnectionId).ToArray(),
                        ats = live.Select(p => p.At.ToUniversalTime()).ToArray(),
                        drains = live.Select(p => p.Draining).ToArray(),
                        actives = live.Select(p => p.ActiveSessions).ToArray(),
                        capacities = live.Select(p => p.ReportedCapacity).ToArray(),
                    },
                    tx, cancellationToken: ct));
                return updated.ToHashSet(StringComparer.Ordinal);
            }
            var done = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in live)
            {
                var rows = await conn.ExecuteAsync(new CommandDefinition(
                    """
                    UPDATE agents SET status = @online, last_heartbeat = @at, agent_draining = @draining, active_sessions = @active,
                        reported_capacity = @capacity, updated_at = @at
                    WHERE agent_id = @agentId AND connection_id = @connectionId
                    """,
                    new
                    {
                        online = AgentStatus.Online, at = p.At, draining = p.Draining, active = p.ActiveSessions, capacity = p.ReportedCapacity,
                        agentId = p.Connection.AgentId, connectionId = p.Connection.ConnectionId,
                    },
                    tx, cancellationToken: ct));
                if (rows == 1) done.Add(p.Connection.AgentId);
            }
            return done;
        }, ct);
        var orphaned = live.Where(p => !written.Contains(p.Connection.AgentId)).Select(p => p.Connection).ToList();
        metrics.HeartbeatBatchWritten(live.Count - orphaned.Count);
        return orphaned;
    }

    /// <summary>
    /// Marks offline every 'online' row silent for longer than the timeout plus a grace: covers a replica
    /// that died without closing its sockets. Flush first (<see cref="AgentLivenessMonitor"/> does): the rows of this
    /// replica's own connections are then as fresh as the heartbeats they sent, also right after a database outage, when
    /// the heartbeats of the outage are still buffered and the rows as old as the outage. The rows of other replicas' connections
    /// are that old too until those replicas flushed, so after an outage the monitor calls this only once every replica had time to.
    /// </summary>
    public async Task<int> SweepStaleAsync(DateTimeOffset now, CancellationToken ct)
    {
        var cutoff = now - options.Value.AgentOfflineAfter - options.Value.OfflineSweepGrace;
        await _gate.WaitAsync(ct);
        try
        {
            await using var conn = await db.OpenAsync(ct);
            var swept = await conn.ExecuteAsync(new CommandDefinition(
                """
                UPDATE agents SET status = @offline, connection_id = NULL, updated_at = @now
                WHERE status = @online AND (last_heartbeat IS NULL OR last_heartbeat < @cutoff)
                """,
                new { offline = AgentStatus.Offline, online = AgentStatus.Online, now, cutoff }, cancellationToken: ct));
            if (swept > 0) logger.LogWarning(HubEvents.StaleAgentsSwept, "Marked {Count} silent agent(s) offline (no heartbeat since {Cutoff})", swept, cutoff);
            return swept;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Whether the database answers (throws when it does not): <see cref="AgentLivenessMonitor"/> uses it after an outage.</summary>
    public async Task ProbeAsync(CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        await conn.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: ct));
    }

    /// <summary>Local connections whose agent row is gone or owned by another connection (admin DELETE, takeover elsewhere).</summary>
    public async Task<IReadOnlyList<AgentConnection>> FindDisownedAsync(IReadOnlyList<AgentConnection> connections, CancellationToken ct)
    {
        if (connections.Count == 0) return [];
        await using var conn = await db.OpenAsync(ct);
        var owners = (await conn.QueryAsync<(string AgentId, string? ConnectionId)>(new CommandDefinition(
                $"SELECT agent_id, connection_id FROM agents WHERE {db.InList("agent_id", "ids")}",
                new { ids = connections.Select(c => c.AgentId).ToArray() }, cancellationToken: ct)))
            .ToDictionary(r => r.AgentId, r => r.ConnectionId, StringComparer.Ordinal);
        return connections.Where(c => !owners.TryGetValue(c.AgentId, out var owner) || owner != c.ConnectionId).ToList();
    }

    private sealed record PendingHello(AgentConnection Connection, HelloPayload Hello, DateTimeOffset At);

    private sealed record PendingHeartbeat(AgentConnection Connection, DateTimeOffset At, bool Draining, int ActiveSessions, int ReportedCapacity);

    public async ValueTask DisposeAsync()
    {
        if (_hellosQueue is not null) await _hellosQueue.DisposeAsync();
        _gate.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

/// <summary>
/// The outcome of <see cref="AgentStatusWriter.MarkOnlineAsync"/>; <paramref name="MaxSessions"/> and <paramref name="Region"/> are the
/// agent's registered maximum (<c>agents.max_sessions</c>) and region (<c>agents.region</c>, which a hello never changes).
/// </summary>
public readonly record struct OnlineMark(bool Registered, bool HasLiveSessions, bool Superseded = false, int MaxSessions = 0, string? Region = null);
