using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Templates;

namespace StreamSpace.ControlPlane.Agents;

/// <summary>The outcome of <see cref="PlacementRound.ChooseAsync"/>: an agent, or why every agent was passed over.</summary>
public sealed record PlacementDecision(string? AgentId, IReadOnlyList<AgentRejection> Rejections, int RegisteredAgents)
{
    public bool Placed => AgentId is not null;
}

/// <summary>
/// Chooses the agent for new sessions: online, drained neither by an admin (<c>draining</c>) nor by itself
/// (<c>agent_draining</c>, while it stops), able to run the template on its platform,
/// with capacity left (below both the registered maximum and the capacity the agent reports, which it enforces itself);
/// least loaded first. A <see cref="PlacementRound"/> runs inside the session-creating
/// write transaction and reads load from the live-session counters the database keeps in step with <c>sessions</c>
/// (triggers, migration M0004), so concurrent creates can never overfill an
/// agent: on SQLite the transaction is BEGIN IMMEDIATE (writers serialized); on PostgreSQL the candidate agent
/// rows are locked (FOR NO KEY UPDATE) in agent-id order (a stable order, so two rounds cannot deadlock on them).
/// One round places a whole batch of creates (<see cref="Sessions.SessionCreator"/>), so the locks and the load
/// read are paid once per batch, not once per session.
/// </summary>
public sealed class AgentPlacement(Db db)
{
    /// <summary>
    /// The placement read of a batch of creates, for one round trip together with the batch's other reads
    /// (<see cref="Sessions.SessionCreator"/>): locks the candidate agents and counts their live sessions; parameters
    /// <c>@p_online</c> (<see cref="Parameters"/>). The live counts are read after the locks are held and, under READ
    /// COMMITTED (PostgreSQL), with their own snapshot, so they include every session committed by a create that held
    /// these rows before us. The counts are kept by triggers on sessions (migration M0004); a session ending concurrently
    /// can only make them briefly too high, which errs on the safe side. Read the result with <see cref="ReadAsync"/>.
    /// </summary>
    public string LockSql => $"""
        SELECT agent_id AS AgentId, status AS Status, draining AS Draining, agent_draining AS AgentDraining, platform AS Platform, max_sessions AS MaxSessions, reported_capacity AS ReportedCapacity
        FROM agents WHERE status = @p_online AND draining = @p_no AND agent_draining = @p_no
        ORDER BY agent_id{db.ForUpdate};
        SELECT agent_id, live FROM agent_live_sessions WHERE live <> 0
        """;

    /// <summary>The parameters of <see cref="LockSql"/>.</summary>
    public static object Parameters { get; } = new { p_online = AgentStatus.Online, p_no = false };

    /// <summary>Reads the two result sets of <see cref="LockSql"/>; then place any number of sessions with the round.</summary>
    public static async Task<PlacementRound> ReadAsync(SqlMapper.GridReader results, DbConnection conn, DbTransaction tx)
    {
        var locked = (await results.ReadAsync<PlacementCandidate>()).ToList();
        var load = (await results.ReadAsync<(string AgentId, long Live)>()).ToDictionary(r => r.AgentId, r => r.Live, StringComparer.Ordinal);
        return new PlacementRound(conn, tx, locked, load);
    }
}

// Property-mapped (not positional): SQLite hands back booleans and ints as Int64, which Dapper converts only for properties.
internal sealed record PlacementCandidate
{
    public string AgentId { get; init; } = "";
    public string Status { get; init; } = "";
    /// <summary>Drained by an admin.</summary>
    public bool Draining { get; init; }
    /// <summary>The agent said it is draining (it is stopping).</summary>
    public bool AgentDraining { get; init; }
    public string Platform { get; init; } = "";
    /// <summary>The registered maximum (an admin's).</summary>
    public int MaxSessions { get; init; }
    /// <summary>What the agent's last hello or heartbeat said it accepts; null before its first hello.</summary>
    public int? ReportedCapacity { get; init; }
    /// <summary>Whether the agent's own figure is the one that limits it (below the registered maximum).</summary>
    public bool LimitedByAgent => ReportedCapacity < MaxSessions;
    /// <summary>The sessions placement puts on the agent at most: the agent refuses a start beyond its own figure.</summary>
    public int Capacity => AgentRecord.CapacityOf(MaxSessions, ReportedCapacity);
}

/// <summary>
/// One placement pass inside a write transaction: the locked candidates and their live-session counts.
/// Every successful <see cref="ChooseAsync"/> reserves a slot in the counts, so the next choice of the same
/// round sees it, exactly as a later transaction would see the inserted session.
/// </summary>
public sealed class PlacementRound
{
    private readonly DbConnection _conn;
    private readonly DbTransaction _tx;
    private readonly List<PlacementCandidate> _candidates;
    private readonly Dictionary<string, long> _load;
    private List<PlacementCandidate>? _all;

    internal PlacementRound(DbConnection conn, DbTransaction tx, List<PlacementCandidate> candidates, Dictionary<string, long> load)
    {
        _conn = conn;
        _tx = tx;
        _candidates = candidates;
        _load = load;
    }

    private long LiveOn(string agentId) => _load.GetValueOrDefault(agentId);

    public async ValueTask<PlacementDecision> ChooseAsync(string templateName, TemplateDefinition template, CancellationToken ct)
    {
        PlacementCandidate? chosen = null;
        foreach (var a in _candidates)
        {
            if (!template.RunsOn(a.Platform) || LiveOn(a.AgentId) >= a.Capacity) continue;
            if (chosen is null || Better(a, chosen)) chosen = a;
        }
        if (chosen is not null)
        {
            _load[chosen.AgentId] = LiveOn(chosen.AgentId) + 1;
            return new PlacementDecision(chosen.AgentId, [], _candidates.Count);
        }

        // Nobody can take it: explain every registered agent, so an operator never has to guess.
        _all ??= (await _conn.QueryAsync<PlacementCandidate>(new CommandDefinition(
            "SELECT agent_id AS AgentId, status AS Status, draining AS Draining, agent_draining AS AgentDraining, platform AS Platform, max_sessions AS MaxSessions, reported_capacity AS ReportedCapacity FROM agents ORDER BY agent_id",
            transaction: _tx, cancellationToken: ct))).ToList();
        var reasons = _all.Select(a => new AgentRejection(a.AgentId, Explain(a, LiveOn(a.AgentId), templateName, template))).ToList();
        return new PlacementDecision(null, reasons, _all.Count);
    }

    /// <summary>Least loaded first, then the most room left, then agent id (a stable order).</summary>
    private bool Better(PlacementCandidate a, PlacementCandidate b)
    {
        long la = LiveOn(a.AgentId), lb = LiveOn(b.AgentId);
        if (la != lb) return la < lb;
        long ra = a.Capacity - la, rb = b.Capacity - lb;
        if (ra != rb) return ra > rb;
        return string.CompareOrdinal(a.AgentId, b.AgentId) < 0;
    }

    private static string Explain(PlacementCandidate agent, long live, string templateName, TemplateDefinition template)
    {
        if (agent.Status != AgentStatus.Online) return agent.Status;
        if (agent.Draining) return "draining";
        if (agent.AgentDraining) return "draining (the agent is stopping)";
        if (!template.RunsOn(agent.Platform)) return $"platform {agent.Platform} cannot run template {templateName}";
        if (live >= agent.Capacity)
            return agent.LimitedByAgent
                ? $"full: the agent reports capacity {agent.Capacity} ({live} live; registered for {agent.MaxSessions})"
                : $"full: {live}/{agent.MaxSessions} sessions, its registered maximum";
        // Changed between the two reads (e.g. came online just now); the caller may simply retry.
        return "became available during placement; try again";
    }
}
