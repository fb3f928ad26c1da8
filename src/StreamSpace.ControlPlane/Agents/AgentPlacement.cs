using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Templates;

namespace StreamSpace.ControlPlane.Agents;

/// <summary>The outcome of <see cref="AgentPlacement.ChooseAsync"/>: an agent, or why every agent was passed over.</summary>
public sealed record PlacementDecision(string? AgentId, IReadOnlyList<AgentRejection> Rejections, int RegisteredAgents)
{
    public bool Placed => AgentId is not null;
}

/// <summary>
/// Chooses the agent for a new session: online, not draining, able to run the template on its platform,
/// with capacity left; least loaded first. Runs inside the session-creating write transaction and counts
/// load from <c>sessions</c> itself, so concurrent creates can never overfill an agent: on SQLite the
/// transaction is BEGIN IMMEDIATE (writers serialized); on PostgreSQL the candidate agent rows are locked
/// FOR UPDATE in agent-id order (a stable order, so two creates cannot deadlock on them).
/// </summary>
public sealed class AgentPlacement(Db db)
{
    // Property-mapped (not positional): SQLite hands back booleans and ints as Int64, which Dapper converts only for properties.
    private sealed record Candidate
    {
        public string AgentId { get; init; } = "";
        public string Status { get; init; } = "";
        public bool Draining { get; init; }
        public string Platform { get; init; } = "";
        public int MaxSessions { get; init; }
    }

    public async Task<PlacementDecision> ChooseAsync(DbConnection conn, DbTransaction tx, string templateName, TemplateDefinition template, CancellationToken ct)
    {
        var locked = (await conn.QueryAsync<Candidate>(new CommandDefinition(
            $"""
            SELECT agent_id AS AgentId, status AS Status, draining AS Draining, platform AS Platform, max_sessions AS MaxSessions
            FROM agents WHERE status = @online AND draining = @no
            ORDER BY agent_id{db.ForUpdate}
            """,
            new { online = AgentStatus.Online, no = false }, tx, cancellationToken: ct))).ToList();

        // Counted after the locks are held: on PostgreSQL (READ COMMITTED) this statement sees every session
        // committed by a create that held these rows before us.
        var load = (await conn.QueryAsync<(string AgentId, long Live)>(new CommandDefinition(
            $"""
            SELECT agent_id, COUNT(*) FROM sessions
            WHERE agent_id IS NOT NULL AND state IN ({Sessions.SessionState.LiveSqlList})
            GROUP BY agent_id
            """,
            transaction: tx, cancellationToken: ct))).ToDictionary(r => r.AgentId, r => r.Live, StringComparer.Ordinal);
        long LiveOn(string agentId) => load.GetValueOrDefault(agentId);

        var chosen = locked
            .Where(a => template.RunsOn(a.Platform) && LiveOn(a.AgentId) < a.MaxSessions)
            .OrderBy(a => LiveOn(a.AgentId))
            .ThenByDescending(a => a.MaxSessions - LiveOn(a.AgentId))
            .ThenBy(a => a.AgentId, StringComparer.Ordinal)
            .FirstOrDefault();
        if (chosen is not null)
            return new PlacementDecision(chosen.AgentId, [], locked.Count);

        // Nobody can take it: explain every registered agent, so an operator never has to guess.
        var all = (await conn.QueryAsync<Candidate>(new CommandDefinition(
            "SELECT agent_id AS AgentId, status AS Status, draining AS Draining, platform AS Platform, max_sessions AS MaxSessions FROM agents ORDER BY agent_id",
            transaction: tx, cancellationToken: ct))).ToList();
        var reasons = all.Select(a => new AgentRejection(a.AgentId, Explain(a, LiveOn(a.AgentId), templateName, template))).ToList();
        return new PlacementDecision(null, reasons, all.Count);
    }

    private static string Explain(Candidate agent, long live, string templateName, TemplateDefinition template)
    {
        if (agent.Status != AgentStatus.Online) return agent.Status;
        if (agent.Draining) return "draining";
        if (!template.RunsOn(agent.Platform)) return $"platform {agent.Platform} cannot run template {templateName}";
        if (live >= agent.MaxSessions) return $"full ({live}/{agent.MaxSessions} sessions)";
        // Changed between the two reads (e.g. came online just now); the caller may simply retry.
        return "became available during placement; try again";
    }
}
