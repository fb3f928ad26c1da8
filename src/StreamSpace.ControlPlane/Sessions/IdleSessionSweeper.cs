using Dapper;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Templates;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>
/// Idle handling: a running session with no viewer input for its template's <c>idleTimeoutMinutes</c>, or else for
/// <see cref="StreamSpaceOptions.IdleTimeout"/>, is hibernated (frees its CPU, wakes where it was) or terminated, per
/// <see cref="StreamSpaceOptions.IdleAction"/>; a timeout of zero means never (the global default). Checked every
/// <see cref="StreamSpaceOptions.IdleCheckInterval"/>.
/// </summary>
/// <remarks>
/// Idle since: the latest of the last input the relay saw (<c>last_activity_at</c>), the session's last state change
/// (<c>updated_at</c>: when it became running, so a session just started or woken gets the whole timeout, and one that
/// was never viewed idles from its start) and its agent's last hello (<c>agents.connected_at</c>). Idle time only counts
/// while somebody could give input: a session whose agent is offline is never idle (every viewer ticket is refused
/// then), and one whose agent came back, or reconnected after the control plane was down (agents lose their socket
/// then and say hello again), gets the whole timeout from that hello.
/// Input still on its way counts too: this replica's input not yet written by <see cref="SessionActivityFlusher"/> is
/// read from <see cref="SessionActivity"/>, and other replicas' is covered by deciding one
/// <see cref="StreamingOptions.ActivityFlushInterval"/> late. Each session is handled in its own transaction that
/// re-checks all of it under the row lock, exactly as <c>POST /hibernate</c> or <c>DELETE</c> would do it (state change,
/// command through the outbox, audit entry), so input arriving meanwhile, a user's own request, or another replica's
/// sweep wins cleanly.
/// </remarks>
internal sealed class IdleSessionSweeper(
    Db db, TemplateCatalog catalog, CommandOutbox outbox, AuditLog audit, SessionActivity activity, TimeProvider time,
    IOptions<StreamSpaceOptions> options, IOptions<StreamingOptions> streaming, ILogger<IdleSessionSweeper> logger) : BackgroundService
{
    /// <summary>Sessions handled per check at most; the rest follow at the next one.</summary>
    internal const int BatchSize = 500;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        if (o.IdleTimeout == TimeSpan.Zero)
            logger.LogInformation("Idle handling is off by default (StreamSpace__IdleTimeout is 0); sessions of templates with " +
                "idleTimeoutMinutes are {Action}d after theirs, checked every {Interval}", o.IdleAction, o.IdleCheckInterval);
        else
            logger.LogInformation("Idle handling: running sessions without input for {Timeout} (or their template's idleTimeoutMinutes) " +
                "are {Action}d, checked every {Interval}", o.IdleTimeout, o.IdleAction, o.IdleCheckInterval);
        using var timer = new PeriodicTimer(o.IdleCheckInterval, time);
        var outage = new DatabaseOutageLog(logger, time, "Idle session check", o.IdleCheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await SweepAsync(stoppingToken);
                    outage.Succeeded();
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // The sessions are still idle at the next check.
                    if (!outage.Failed(ex))
                        logger.LogWarning("Could not check for idle sessions, trying again in {Interval}: {Error}", o.IdleCheckInterval, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Hibernates or terminates every session idle beyond its timeout (up to <see cref="BatchSize"/> per timeout); returns
    /// their ids. Templates that set <c>idleTimeoutMinutes</c> are checked against theirs, all others against the global one.
    /// </summary>
    internal async Task<IReadOnlyList<string>> SweepAsync(CancellationToken ct)
    {
        var o = options.Value;
        var own = (await catalog.ListAsync(ct)).Where(t => t.IdleTimeoutMinutes is not null)
            .ToDictionary(t => t.Name!, t => TimeSpan.FromMinutes(t.IdleTimeoutMinutes!.Value), StringComparer.Ordinal);
        var handled = new List<string>();
        if (o.IdleTimeout > TimeSpan.Zero)
            await SweepAsync(o.IdleTimeout, only: null, except: [.. own.Keys], handled, ct);
        foreach (var group in own.Where(t => t.Value > TimeSpan.Zero).GroupBy(t => t.Value))
            await SweepAsync(group.Key, only: [.. group.Select(t => t.Key)], except: null, handled, ct);
        return handled;
    }

    private async Task SweepAsync(TimeSpan timeout, string[]? only, string[]? except, List<string> handled, CancellationToken ct)
    {
        var o = options.Value;
        var now = time.GetUtcNow();
        // Other replicas' last input reaches the database up to one flush interval late.
        var cutoff = now - timeout - streaming.Value.ActivityFlushInterval;
        var greatest = db.IsPostgres ? "GREATEST" : "MAX";
        // connected_at is set by every hello, so it is there for an online agent; COALESCE keeps SQLite's MAX from a NULL.
        var since = $"{greatest}(COALESCE(s.last_activity_at, s.updated_at), s.updated_at, COALESCE(a.connected_at, s.updated_at))";
        var templates = only is not null ? $" AND {db.InList("s.template", "templates")}"
            : except is { Length: > 0 } ? $" AND NOT ({db.InList("s.template", "templates")})"
            : "";
        var idle = $"s.state = @running AND a.status = @online AND {since} < @cutoff{templates}";
        const string from = "sessions s JOIN agents a ON a.agent_id = s.agent_id";
        var names = only ?? except ?? [];
        List<string> candidates;
        await using (var conn = await db.OpenAsync(ct))
        {
            candidates = (await conn.QueryAsync<string>(new CommandDefinition(
                $"SELECT s.id FROM {from} WHERE {idle} ORDER BY s.updated_at LIMIT @batch",
                new { running = SessionState.Running, online = AgentStatus.Online, cutoff, templates = names, batch = BatchSize },
                cancellationToken: ct))).AsList();
        }

        var terminate = o.IdleAction == StreamSpaceOptions.IdleTerminate;
        var done = new List<string>();
        foreach (var id in candidates)
        {
            var agent = await db.InTransactionAsync(async (conn, tx) =>
            {
                // Only the session row is locked: agent rows are placement's and the hub's to lock.
                var row = await conn.QuerySingleOrDefaultAsync<IdleRow>(new CommandDefinition(
                    $"SELECT s.agent_id AS AgentId, s.username AS Username, {since} AS IdleSince FROM {from} WHERE s.id = @id AND {idle}{db.ForUpdate}{(db.IsPostgres ? " OF s" : "")}",
                    new { id, running = SessionState.Running, online = AgentStatus.Online, cutoff, templates = names }, tx, cancellationToken: ct));
                if (row is null) return null; // input came, the agent went away, or the session moved on meanwhile
                if (activity.LastInput(id) is { } local && local >= cutoff) return null; // input here, not written yet
                var reason = $"idle: no input for {timeout} (since {row.IdleSince:u})";
                await SessionStateMachine.TryTransitionAsync(conn, tx, id, terminate ? SessionState.Terminating : SessionState.Hibernating,
                    reason, now, SessionState.Running, ct: ct);
                await outbox.EnqueueAsync(conn, tx, row.AgentId, id, terminate ? CommandTypes.SessionStop : CommandTypes.SessionHibernate,
                    new SessionCommandArgs(id), ct);
                await audit.WriteSessionAsync(conn, tx, Identity.AdminBootstrap.SystemActor, AuditActions.SessionIdle, id, row.Username,
                    $"{o.IdleAction}d after {timeout} without input", null, ct);
                return row.AgentId;
            }, ct);
            if (agent is null) continue;
            outbox.NotifyQueued(agent);
            done.Add(id);
        }
        if (done.Count > 0)
            logger.LogInformation("{Count} idle session(s) {Action}d after {Timeout} without input: {Sessions}",
                done.Count, o.IdleAction, timeout, string.Join(", ", done.Take(20)));
        handled.AddRange(done);
    }

    private sealed class IdleRow
    {
        public string AgentId { get; init; } = "";
        public string Username { get; init; } = "";
        public DateTimeOffset IdleSince { get; init; }
    }
}
