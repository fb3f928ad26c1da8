using System.Data.Common;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Templates;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>A validated create request, as <see cref="SessionCreator"/> takes it.</summary>
public sealed record SessionCreateRequest(
    CurrentUser Caller, string TargetUsername, string TemplateName, string? Cpu, string? Memory, bool PersistentHome, string? ClientIp);

/// <summary>The created session, or the error the API answers with.</summary>
public sealed record SessionCreateOutcome(SessionView? Session, JsonHttpResult<ApiError>? Error);

/// <summary>
/// Creates sessions: owner, template, quota and placement checked and the session, its start command and the
/// audit entry written in ONE write transaction (quota and capacity can never be exceeded, invariant 2: the
/// command is written before it is sent). Creates that arrive together are group-committed
/// (<see cref="GroupCommitQueue{TItem, TResult}"/>) in a single transaction, so the row locks, the load counts and
/// the commit are paid once per batch. Each request still gets its own answer
/// (a refused one does not affect the others), and an idle control plane answers a lone create at once.
/// </summary>
public sealed class SessionCreator : IAsyncDisposable
{
    /// <summary>Upper bound of one transaction, so a burst cannot build a transaction that holds its locks for long.</summary>
    internal const int MaxBatch = 256;

    private readonly Db db;
    private readonly TemplateCatalog catalog;
    private readonly SessionQuota quota;
    private readonly AgentPlacement placement;
    private readonly CommandOutbox outbox;
    private readonly AuditLog audit;
    private readonly TimeProvider time;
    private readonly ILogger<SessionCreator> logger;
    private readonly GroupCommitQueue<SessionCreateRequest, SessionCreateOutcome> _queue;

    public SessionCreator(Db db, TemplateCatalog catalog, SessionQuota quota, AgentPlacement placement, CommandOutbox outbox, AuditLog audit,
        TimeProvider time, ILogger<SessionCreator> logger)
    {
        this.db = db;
        this.catalog = catalog;
        this.quota = quota;
        this.placement = placement;
        this.outbox = outbox;
        this.audit = audit;
        this.time = time;
        this.logger = logger;
        // One batch in flight: batches serialize on the agent rows anyway, and a second worker only split the queue into
        // smaller batches that then waited for each other's locks (measured: 695 vs 460-580 creates/s).
        _queue = new GroupCommitQueue<SessionCreateRequest, SessionCreateOutcome>(RunBatchAsync, MaxBatch);
    }

    /// <summary>
    /// Queues the create for the next batch. Text the database would refuse (<see cref="StorableText"/>, or resources
    /// longer than their columns) is answered here and never queued: PostgreSQL would fail the whole batch with it,
    /// every other caller's create included. A template or user name is only looked up, never written unless it exists.
    /// </summary>
    public Task<SessionCreateOutcome> CreateAsync(SessionCreateRequest request, CancellationToken ct) =>
        Refused(request) is { } refused ? Task.FromResult(refused) : _queue.EnqueueAsync(request, ct);

    private static SessionCreateOutcome? Refused(SessionCreateRequest r)
    {
        if (UnstorableField(r) is { } field) return Invalid(field, StorableText.Problem);
        // Checked by the API too; written as given into sessions.cpu and sessions.memory, 32 wide (ResourceQuantity.MaxLength).
        if (r.Cpu is not null && !ResourceQuantity.TryParseCpu(r.Cpu, out _, out var cpuError)) return Invalid("resources.cpu", cpuError);
        if (r.Memory is not null && !ResourceQuantity.TryParseMemory(r.Memory, out _, out var memoryError)) return Invalid("resources.memory", memoryError);
        return null;
    }

    /// <summary>Creates queued or in the batch that runs now (for diagnostics and tests).</summary>
    internal int Pending => _queue.Pending;

    private static string? UnstorableField(SessionCreateRequest r) =>
        !StorableText.IsStorable(r.TemplateName) ? "template"
        : !StorableText.IsStorable(r.TargetUsername) ? "user"
        : !StorableText.IsStorable(r.Cpu) ? "resources.cpu"
        : !StorableText.IsStorable(r.Memory) ? "resources.memory"
        : null;

    private async Task<IReadOnlyList<SessionCreateOutcome>> RunBatchAsync(IReadOnlyList<SessionCreateRequest> batch, CancellationToken ct)
    {
        SessionCreateOutcome[] outcomes;
        WrittenCommands written;
        // The start commands' hand-off reservations on their agents' connections: an attempt that does not commit gives
        // them back, else its never-written command ids stay reserved for as long as the connection lives.
        var handOff = outbox.NewHandOff();
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    (outcomes, written) = await db.InTransactionAsync((conn, tx) =>
                    {
                        // Run again (a PostgreSQL deadlock, or the id collision below): the attempt before did not commit.
                        handOff.Release();
                        return CreateAllAsync(conn, tx, batch, handOff, ct);
                    }, ct);
                    break;
                }
                catch (Exception ex) when (attempt < IdAttempts && IsSessionIdCollision(ex))
                {
                    // A new id equals an existing session's: nothing committed, and the next attempt draws new ids for all.
                    logger.LogInformation("A new session id was already taken; creating the batch of {Count} again with new ids", batch.Count);
                }
            }
        }
        catch (Exception ex)
        {
            // Nothing committed; every request of the batch fails the same way.
            handOff.Release();
            if (!ErrorHandling.IsDatabaseOutage(ex) && ex is not OperationCanceledException)
                logger.LogError(ex, "Creating a batch of {Count} session(s) failed", batch.Count);
            throw;
        }
        // Start commands for agents connected here were written already claimed and go straight to their connection.
        outbox.NotifyWritten(written);
        return outcomes;
    }

    public ValueTask DisposeAsync() => _queue.DisposeAsync();

    /// <summary>
    /// Attempts of a batch whose new session ids collide. Ids are {user}-{template}-{6 letters} (design §4): for a user
    /// with thousands of sessions a repeat is likely sooner or later (the creation benchmark, ~2 000 sessions per user,
    /// hit one every few runs, and the whole batch failed with it); a retry draws new ones.
    /// </summary>
    private const int IdAttempts = 5;

    /// <summary>True for the primary-key violation of <c>sessions</c>, on either database.</summary>
    internal static bool IsSessionIdCollision(Exception ex) => ex switch
    {
        Npgsql.PostgresException pg => pg.SqlState == "23505" && pg.ConstraintName == "PK_sessions",
        Microsoft.Data.Sqlite.SqliteException lite => lite.SqliteErrorCode == 19 && lite.Message.Contains("sessions.id", StringComparison.Ordinal),
        _ => false,
    };

    /// <summary>Runs inside the write transaction; may run again from the start when PostgreSQL picks it as a deadlock victim.</summary>
    private async Task<(SessionCreateOutcome[], WrittenCommands)> CreateAllAsync(
        DbConnection conn, DbTransaction tx, IReadOnlyList<SessionCreateRequest> batch, HandOffReservations handOff, CancellationToken ct)
    {
        var outcomes = new SessionCreateOutcome[batch.Count];
        // Every read of the batch in ONE round trip, locks in a fixed order (users, templates, agents): the owners and their
        // live counts, the templates, the candidate agents and their load.
        var args = new DynamicParameters(AgentPlacement.Parameters);
        args.AddDynamicParams(new
        {
            q_names = batch.Select(r => r.TargetUsername).Distinct(StringComparer.Ordinal).ToArray(),
            t_names = batch.Select(r => r.TemplateName).Distinct(StringComparer.Ordinal).ToArray(),
        });
        using var reads = await conn.QueryMultipleAsync(new CommandDefinition(
            $"{quota.LockSql};\n{catalog.ShareSql};\n{placement.LockSql}", args, tx, cancellationToken: ct));
        var users = await SessionQuota.ReadAsync(reads);
        var templates = await TemplateCatalog.ReadSharedAsync(reads);
        var round = await AgentPlacement.ReadAsync(reads, conn, tx);
        var now = time.GetUtcNow();
        var sessions = new List<SessionRecord>(batch.Count);
        var commands = new List<NewCommand>(batch.Count);
        var entries = new List<NewAuditEntry>(batch.Count);

        for (var i = 0; i < batch.Count; i++)
        {
            var r = batch[i];
            var owner = users.Owner(r.TargetUsername);
            if (owner is null) { outcomes[i] = Invalid("user", $"there is no user named '{r.TargetUsername}'"); continue; }
            if (owner.Disabled) { outcomes[i] = Invalid("user", $"the user '{r.TargetUsername}' is disabled"); continue; }

            if (!templates.TryGetValue(r.TemplateName, out var template))
            {
                outcomes[i] = Invalid("template", $"there is no template named '{r.TemplateName}' (GET /api/v1/templates lists them)");
                continue;
            }

            if (!r.Caller.IsAdmin && AboveTemplate(r, template) is { } above) { outcomes[i] = above; continue; }

            var quotaStatus = users.Check(owner);
            if (quotaStatus.Exceeded)
            {
                outcomes[i] = new SessionCreateOutcome(null, ApiErrors.Forbidden(
                    $"User '{owner.Username}' already has {quotaStatus.LiveSessions} live session(s) and may have at most {quotaStatus.MaxSessions}; delete one first.",
                    "Quota exceeded"));
                continue;
            }

            var decision = await round.ChooseAsync(r.TemplateName, template, ct);
            if (!decision.Placed) { outcomes[i] = new SessionCreateOutcome(null, NoAgents(decision)); continue; }
            users.Reserve(owner);

            var session = new SessionRecord
            {
                Id = SessionNames.New(owner.Username, r.TemplateName),
                UserId = owner.Id,
                Username = owner.Username,
                Template = r.TemplateName,
                State = SessionState.Pending,
                AgentId = decision.AgentId,
                Cpu = r.Cpu ?? template.DefaultResources!.Cpu!,
                Memory = r.Memory ?? template.DefaultResources!.Memory!,
                PersistentHome = r.PersistentHome,
                CreatedAt = now,
                UpdatedAt = now,
            };
            sessions.Add(session);
            commands.Add(new NewCommand(decision.AgentId!, session.Id, CommandTypes.SessionStart, new SessionStartArgs
            {
                SessionId = session.Id,
                User = session.Username,
                UserId = owner.Id,
                UserCreatedAt = owner.CreatedAt,
                Template = r.TemplateName,
                Resources = new SessionResources { Cpu = session.Cpu, Memory = session.Memory },
                PersistentHome = session.PersistentHome,
                Launch = template.ToLaunchSpec(),
            }));
            entries.Add(new NewAuditEntry(r.Caller.Username, AuditActions.SessionCreated, session.Id,
                $"template={r.TemplateName} user={owner.Username} agent={decision.AgentId}", r.ClientIp, owner.Username));
            outcomes[i] = new SessionCreateOutcome(session.ToView(), null);
        }

        return (outcomes, await InsertAsync(conn, tx, sessions, commands, entries, handOff, ct));
    }

    /// <summary>
    /// Writes the sessions, their start commands (handed off where the agent is connected here, see
    /// <see cref="CommandOutbox"/>) and the audit entries: on PostgreSQL three set-based statements in one round trip.
    /// </summary>
    private async Task<WrittenCommands> InsertAsync(
        DbConnection conn, DbTransaction tx, List<SessionRecord> sessions, List<NewCommand> commands, List<NewAuditEntry> entries,
        HandOffReservations handOff, CancellationToken ct)
    {
        if (sessions.Count == 0) return new WrittenCommands([]);
        if (!db.IsPostgres)
        {
            foreach (var session in sessions)
                await conn.ExecuteAsync(new CommandDefinition(
                    """
                    INSERT INTO sessions (id, user_id, username, template, state, state_reason, agent_id, cpu, memory, persistent_home, created_at, updated_at, last_activity_at)
                    VALUES (@Id, @UserId, @Username, @Template, @State, NULL, @AgentId, @Cpu, @Memory, @PersistentHome, @CreatedAt, @UpdatedAt, NULL)
                    """,
                    session, tx, cancellationToken: ct));
            var rows = await outbox.WriteManyAsync(conn, tx, commands, ct, handOff: handOff);
            await audit.WriteManyAsync(conn, tx, entries, ct);
            return rows;
        }

        var args = new DynamicParameters(new
        {
            s_pending = SessionState.Pending, s_now = sessions[0].CreatedAt,
            s_ids = sessions.Select(s => s.Id).ToArray(), s_users = sessions.Select(s => s.UserId).ToArray(),
            s_names = sessions.Select(s => s.Username).ToArray(), s_templates = sessions.Select(s => s.Template).ToArray(),
            s_agents = sessions.Select(s => s.AgentId).ToArray(), s_cpus = sessions.Select(s => s.Cpu).ToArray(),
            s_memories = sessions.Select(s => s.Memory).ToArray(), s_homes = sessions.Select(s => s.PersistentHome).ToArray(),
        });
        var (commandSql, commandArgs, written) = outbox.PgInsertMany(commands, handOff: handOff);
        var (auditSql, auditArgs) = audit.PgInsertMany(entries);
        args.AddDynamicParams(commandArgs);
        args.AddDynamicParams(auditArgs);
        // Sessions first: the commands reference them. Cached plans for the three INSERTs (they scan no table) and for the
        // sessions' foreign-key check and live-counter triggers they fire; the batch's locking reads before them keep
        // per-call plans (see Db.CachedPlansSql).
        await conn.ExecuteAsync(new CommandDefinition(
            $"""
            {Db.CachedPlansSql}
            INSERT INTO sessions (id, user_id, username, template, state, state_reason, agent_id, cpu, memory, persistent_home, created_at, updated_at, last_activity_at)
            SELECT v.id, v.user_id, v.username, v.template, @s_pending, NULL, v.agent_id, v.cpu, v.memory, v.home, @s_now, @s_now, NULL
            FROM unnest(@s_ids, @s_users, @s_names, @s_templates, @s_agents, @s_cpus, @s_memories, @s_homes)
                AS v(id, user_id, username, template, agent_id, cpu, memory, home);
            {commandSql};
            {auditSql}
            """,
            args, tx, cancellationToken: ct));
        return written;
    }

    /// <summary>
    /// A request for more than the template's <c>defaultResources</c>, refused for anyone but an admin: the template's
    /// values are the per-session limits that keep one session from taking the host (design-deviations 9), so a user
    /// may ask for less but not more. Compared by value (<c>0.5</c> = <c>500m</c>, <c>1Gi</c> = <c>1024Mi</c>).
    /// </summary>
    private static SessionCreateOutcome? AboveTemplate(SessionCreateRequest r, TemplateView template)
    {
        var fields = new Dictionary<string, string>();
        var ceiling = template.DefaultResources;
        // Both sides were validated (the request by the API, the template when stored); a template value that would not
        // parse counts as no room, so a broken template never lets a request through.
        if (r.Cpu is not null && ResourceQuantity.TryParseCpu(r.Cpu, out var cpu, out _)
            && !(ResourceQuantity.TryParseCpu(ceiling?.Cpu, out var maxCpu, out _) && cpu <= maxCpu))
            fields["resources.cpu"] = $"{r.Cpu} is above the template's {ceiling?.Cpu}";
        if (r.Memory is not null && ResourceQuantity.TryParseMemory(r.Memory, out var memory, out _)
            && !(ResourceQuantity.TryParseMemory(ceiling?.Memory, out var maxMemory, out _) && memory <= maxMemory))
            fields["resources.memory"] = $"{r.Memory} is above the template's {ceiling?.Memory}";
        if (fields.Count == 0) return null;
        var message = string.Join("; ", fields.Select(f => $"'{f.Key}' {f.Value}"))
                      + $"; only an admin may ask for more than template '{r.TemplateName}' gives.";
        return new SessionCreateOutcome(null, TypedResults.Json(new ApiError("Above template resources", message) { Fields = fields },
            statusCode: StatusCodes.Status403Forbidden));
    }

    private static SessionCreateOutcome Invalid(string field, string message) =>
        new(null, ApiErrors.BadRequest($"The request is invalid: {field}: {message}", new Dictionary<string, string> { [field] = message }));

    private static JsonHttpResult<ApiError> NoAgents(PlacementDecision decision)
    {
        var message = decision.RegisteredAgents == 0 && decision.Rejections.Count == 0
            ? "No agent is registered, so there is nowhere to run the session. An admin adds one with POST /api/v1/agents "
              + "and starts it with STREAMSPACE_AGENT_ID and STREAMSPACE_AGENT_TOKEN, or runs the control plane with STREAMSPACE_EMBEDDED_AGENT=true."
            : $"No registered agent can take this session right now ({decision.Rejections.Count} registered); 'reasons' says why for each.";
        return TypedResults.Json(new ApiError("No agents available", message) { Reasons = decision.Rejections },
            statusCode: StatusCodes.Status503ServiceUnavailable);
    }
}
