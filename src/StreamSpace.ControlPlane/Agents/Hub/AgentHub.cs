using System.Net.WebSockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Runs one agent control connection from the accepted socket to its end: the handshake (contract §2),
/// the read loop that routes heartbeats, acks, results and observations, periodic reconciliation, and
/// the cleanup that marks the agent offline — only if this connection is still the current one.
/// Bad input from one agent closes that agent's socket and nothing else.
/// </summary>
public sealed class AgentHub(
    AgentConnectionRegistry registry, AgentStatusWriter statusWriter, CommandDelivery delivery, CommandResults results,
    SessionObservations observations, AgentReconciler reconciler, HubMetrics metrics, TimeProvider time,
    IHostApplicationLifetime lifetime, IOptions<StreamSpaceOptions> options, ILogger<AgentHub> logger)
{
    /// <summary>WebSocket close descriptions are limited to 123 UTF-8 bytes by RFC 6455.</summary>
    private const int MaxCloseDescriptionBytes = 123;
    /// <summary>Bound on the offline write after the socket ended (the request's own token is already cancelled).</summary>
    private static readonly TimeSpan CleanupTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Reports applied in one transaction at most; also the per-connection queue bound (the agent's reads wait beyond it).</summary>
    private const int MaxReportBatch = 512;

    /// <summary>Refusal code of an agent that reports more sessions than its capacity allows (<see cref="SessionObservations.TrackingLimit"/>).</summary>
    private const string TooManySessions = "too_many_sessions";

    private readonly StreamSpaceOptions _options = options.Value;

    public async Task RunAsync(WebSocket socket, string agentId, string tokenHash, CancellationToken requestAborted)
    {
        using var connection = new AgentConnection(agentId, tokenHash, socket, requestAborted);
        using var reader = new FrameReader();
        using var onStopping = lifetime.ApplicationStopping.Register(
            () => _ = connection.CloseAsync(WebSocketCloseStatus.EndpointUnavailable, "control plane shutting down"));
        Task reconcileLoop = Task.CompletedTask;
        Task reportPump = Task.CompletedTask;
        var reports = Channel.CreateBounded<AgentReport>(new BoundedChannelOptions(MaxReportBatch)
        {
            SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait,
        });
        // Reports already received are applied even after the socket ends (bounded by CleanupTimeout), not dropped.
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping);
        // Reconciliation runs per connected agent every ReconcileInterval and always opens a transaction: during an outage
        // each agent's pass says so once, not an error with its stack every interval.
        var reconcileOutage = new DatabaseOutageLog(logger, time, $"Reconciliation of agent {agentId}", _options.ReconcileInterval);
        try
        {
            if (!await HandshakeAsync(connection, reader, reconcileOutage)) return;
            reconcileLoop = ReconcilePeriodicallyAsync(connection, reconcileOutage);
            reportPump = PumpReportsAsync(connection, reports.Reader, drain.Token);
            await ReadLoopAsync(connection, reader, reports.Writer);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The socket ended (peer gone, replaced, timed out, shutdown); cleanup below.
        }
        catch (Exception ex)
        {
            logger.LogError(HubEvents.HubLoopFailed, ex, "Agent {AgentId} connection {ConnectionId} failed", agentId, connection.ConnectionId);
        }
        finally
        {
            reports.Writer.TryComplete();
            drain.CancelAfter(CleanupTimeout);
            await connection.FinishAsync();
            await reportPump;
            await reconcileLoop;
            await ApplyHeldStatusesAfterCloseAsync(connection);
            // Whatever ended the connection (even mid-handshake): offline, but only where the agents row still names
            // this connection id, so a replaced connection's cleanup never touches its successor. That covers one
            // that died between its online write and registration, and one whose hello was still being written
            // when it died (the batch commits it regardless): the offline write waits for that write first.
            if (registry.Remove(connection) || connection.OnlineWrite is not null)
                await MarkOfflineAfterCloseAsync(connection);
        }
    }

    /// <summary>
    /// The connection ended with <c>session.status</c> events still held back by a database failure: one more try
    /// (bounded by <see cref="CleanupTimeout"/>), as the database may be back by now. The agent forgets an ended session
    /// it reported once the connection stayed up a while, so its next hello may not list it: an event dropped here can
    /// make reconciliation fail that session as lost, and each one dropped is logged.
    /// </summary>
    private async Task ApplyHeldStatusesAfterCloseAsync(AgentConnection connection)
    {
        var waiting = connection.UnappliedStatuses;
        if (waiting.Count == 0) return;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping);
        timeout.CancelAfter(CleanupTimeout);
        try
        {
            while (waiting.Count > 0)
            {
                // Nothing else uses the connection any more (its pump and reconciliation ended): no lock to take. Its
                // limit on unknown sessions no longer matters either: there is no connection left to close.
                await observations.ApplyAsync(connection, waiting[0], timeout.Token);
                waiting.RemoveAt(0);
            }
        }
        catch (Exception ex)
        {
            logger.LogError(HubEvents.HubLoopFailed, ex, "Could not apply the {Count} session events agent {AgentId} reported on connection {ConnectionId} before it closed",
                waiting.Count, connection.AgentId, connection.ConnectionId);
        }
        foreach (var dropped in waiting)
        {
            logger.LogWarning(HubEvents.HubLoopFailed, "Dropped the event of agent {AgentId} that session {SessionId} is {ObservedState} ({Reason}): the database did not take it before connection {ConnectionId} closed; the agent's next hello or reconciliation settles the session",
                connection.AgentId, dropped.SessionId, dropped.State, dropped.Reason, connection.ConnectionId);
        }
        waiting.Clear();
    }

    private async Task MarkOfflineAfterCloseAsync(AgentConnection connection)
    {
        try
        {
            using var timeout = new CancellationTokenSource(CleanupTimeout);
            if (connection.OnlineWrite is { } write)
            {
                try
                {
                    await write.WaitAsync(timeout.Token);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !timeout.IsCancellationRequested)
                {
                    // Refused, dropped before its batch, or failed: nothing to undo, and the offline write is a no-op.
                }
            }
            if (await statusWriter.MarkOfflineAsync(connection.AgentId, connection.ConnectionId, time.GetUtcNow(), timeout.Token))
                logger.LogInformation(HubEvents.AgentDisconnected, "Agent {AgentId} disconnected (connection {ConnectionId}); marked offline", connection.AgentId, connection.ConnectionId);
        }
        catch (Exception ex)
        {
            // The database sweep marks the row offline once the heartbeat timeout passes.
            logger.LogError(HubEvents.HubLoopFailed, ex, "Could not mark agent {AgentId} offline after its connection closed", connection.AgentId);
        }
    }

    /// <summary>Reads hello, validates it, marks the agent online and welcomes it. False when the connection was refused.</summary>
    private async Task<bool> HandshakeAsync(AgentConnection connection, FrameReader reader, DatabaseOutageLog reconcileOutage)
    {
        FrameReadStatus status;
        using (var helloTimeout = CancellationTokenSource.CreateLinkedTokenSource(connection.Lifetime))
        {
            helloTimeout.CancelAfter(_options.HelloTimeout);
            try
            {
                status = await reader.ReadAsync(connection.Socket, helloTimeout.Token);
            }
            catch (OperationCanceledException) when (!connection.Lifetime.IsCancellationRequested)
            {
                logger.LogWarning(HubEvents.HandshakeRefused, "Agent {AgentId} sent no hello within {Timeout}; closed", connection.AgentId, _options.HelloTimeout);
                return false;
            }
        }
        if (status == FrameReadStatus.Closed) return false;
        if (status != FrameReadStatus.Text)
            return await RefuseAsync(connection, status == FrameReadStatus.TooLarge ? "frame_too_large" : "malformed", DescribeBadFrame(status));

        if (!ProtocolJson.TryDecode(reader.Message.Span, out var envelope, out var error))
            return await RefuseAsync(connection, envelope is null ? "malformed" : "unsupported_version", error!);
        if (envelope!.Type != MessageTypes.Hello)
            return await RefuseAsync(connection, "expected_hello", $"the first message must be 'hello', got '{envelope.Type}'");
        HelloPayload hello;
        try
        {
            hello = envelope.PayloadAs<HelloPayload>();
        }
        catch (ProtocolException ex)
        {
            return await RefuseAsync(connection, "invalid_hello", ex.Message);
        }
        if (Validate(hello, connection.AgentId) is { } invalid)
            return await RefuseAsync(connection, invalid.Code, invalid.Reason);

        var now = time.GetUtcNow();
        connection.Draining = hello.Draining;
        connection.ActiveSessions = hello.Capacity.ActiveSessions;
        connection.ReportedCapacity = hello.Capacity.MaxSessions;
        foreach (var item in hello.Inventory) SessionObservations.Track(connection, item.SessionId, item.State);
        var online = await statusWriter.MarkOnlineAsync(connection, hello, now, connection.Lifetime);
        if (online.Superseded)
        {
            await connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, "replaced by a newer connection of the same agent");
            return false;
        }
        if (!online.Registered)
            return await RefuseAsync(connection, "unknown_agent", "this agent is no longer registered, or its token was replaced");
        // The registered region is the admin's placement label and wins (README, "Agent process"): a different one in the
        // hello is a misconfigured agent, said here so it can be fixed, and never written over the admin's.
        if (hello.Region is { } reported && online.Region is { } registered && reported != registered)
            logger.LogWarning(HubEvents.RegionMismatch, "Agent {AgentId} says its region is {Reported} but is registered in {Registered}; the registered region applies",
                connection.AgentId, reported, registered);
        // A hello's inventory is what the agent really runs (bounded by the frame size): never a reason to refuse it, or an
        // admin lowering the capacity of an agent with many sessions would lock it out. Only sessions reported later on
        // top of it count against the limit.
        connection.TrackedSessionLimit = Math.Max(SessionObservations.TrackingLimit(online.MaxSessions),
            connection.Inventory.Count + SessionObservations.MinTrackedSessions);

        if (registry.Register(connection, now) is { } replaced)
        {
            logger.LogInformation(HubEvents.AgentReplaced, "Agent {AgentId} reconnected: connection {New} replaces {Old}",
                connection.AgentId, connection.ConnectionId, replaced.ConnectionId);
            _ = replaced.CloseAsync(WebSocketCloseStatus.PolicyViolation, "replaced by a newer connection of the same agent");
        }
        await connection.SendAsync(Envelope.Create(MessageTypes.Welcome, new WelcomePayload
        {
            HeartbeatIntervalSeconds = _options.HeartbeatSeconds,
            AcceptedVersion = ProtocolVersion.Current,
            ConnectionId = connection.ConnectionId,
        }, now, re: envelope.Id), connection.Lifetime);
        logger.LogInformation(HubEvents.AgentConnected, "Agent {AgentId} online: version {Version}, platform {Platform}, {Sessions} session(s) reported, connection {ConnectionId}",
            connection.AgentId, hello.Version, hello.Platform, hello.Inventory.Count, connection.ConnectionId);

        await ApplyEndedInventoryAsync(connection, hello.Inventory);
        // Nothing reported and nothing placed here: reconciliation would change nothing, so a fleet of fresh or idle
        // agents reconnecting at once (after a restart) costs no transaction per agent. The periodic pass still runs.
        if (hello.Inventory.Count > 0 || online.HasLiveSessions)
            await ReconcileAsync(connection, reconcileOutage);
        delivery.Request(connection.AgentId, reconnected: true);
        return true;
    }

    /// <summary>
    /// Sessions the hello reports as exited/crashed/stopped ended while the agent was away: apply them as the
    /// observations they are (an exited app ends terminated, a crash fails with the reason the item carries) before
    /// reconciliation would otherwise call them "lost".
    /// </summary>
    private async Task ApplyEndedInventoryAsync(AgentConnection connection, IReadOnlyList<SessionInventoryItem> inventory)
    {
        var ended = inventory.Where(i => i.State is ObservedStates.Exited or ObservedStates.Crashed or ObservedStates.Stopped).ToList();
        if (ended.Count == 0) return;
        await connection.ProcessingLock.WaitAsync(connection.Lifetime);
        try
        {
            // The agent's own reason (kept like a status's: NUL replaced, cut to the column); older agents send none.
            var statuses = ended.Select(item => new SessionStatusPayload
            {
                SessionId = item.SessionId, State = item.State,
                Reason = string.IsNullOrWhiteSpace(item.Reason) ? "reported at reconnect" : StorableText.Clean(item.Reason),
            }).ToList();
            var applied = 0;
            try
            {
                for (; applied < statuses.Count; applied++) await observations.ApplyAsync(connection, statuses[applied], connection.Lifetime);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Not in the tracked inventory (the hello ended them), so dropping them here would let the reconciliation
                // right after fail them as lost: they wait with the held-back events, and reconciliation waits for those.
                logger.LogError(HubEvents.HubLoopFailed, ex, "Could not apply the ended sessions in agent {AgentId}'s hello; {Count} kept for the next try",
                    connection.AgentId, statuses.Count - applied);
                foreach (var status in statuses.Skip(applied)) Hold(connection, status);
            }
        }
        finally
        {
            connection.ProcessingLock.Release();
        }
    }

    /// <summary>
    /// The hello's shape and limits. System.Text.Json lets an explicit <c>null</c> through even for required members, so
    /// nulls are checked here first: a hello that would otherwise fail with an exception gets a refusal that says why.
    /// </summary>
    private static (string Code, string Reason)? Validate(HelloPayload hello, string authenticatedAgentId)
    {
        if (hello.Capacity is null)
            return ("invalid_hello", "capacity must be an object with maxSessions and activeSessions, not null");
        if (hello.Inventory is null)
            return ("invalid_hello", "inventory must be a list of the agent's sessions (empty when it has none), not null");
        if (hello.Inventory.Any(i => i is null))
            return ("invalid_hello", "every inventory item must be an object with sessionId and state, not null");
        if (hello.AgentId != authenticatedAgentId)
            return ("agent_id_mismatch", $"hello names agent '{hello.AgentId}' but the token belongs to '{authenticatedAgentId}'");
        if (!Platforms.All.Contains(hello.Platform))
            return ("invalid_hello", $"unknown platform '{hello.Platform}' (known: {string.Join(", ", Platforms.All)})");
        if (string.IsNullOrWhiteSpace(hello.Version) || hello.Version.Length > 64)
            return ("invalid_hello", "version must be 1-64 characters");
        if (hello.Region is { Length: 0 or > 64 })
            return ("invalid_hello", "region must be 1-64 characters");
        if (hello.SessionLimits is { Length: > HelloPayload.MaxSessionLimitsLength })
            return ("invalid_hello", $"sessionLimits must be at most {HelloPayload.MaxSessionLimitsLength} characters");
        if (hello.Capacity.ActiveSessions < 0 || hello.Capacity.MaxSessions < 0)
            return ("invalid_hello", "capacity figures must not be negative");
        if (hello.Inventory.Any(i => string.IsNullOrEmpty(i.SessionId) || i.SessionId.Length > Sessions.SessionNames.MaxIdLength))
            return ("invalid_hello", $"every inventory item needs a sessionId of at most {Sessions.SessionNames.MaxIdLength} characters");
        // Checked before the hello joins other agents' hellos in one UPDATE, which PostgreSQL would refuse as a whole.
        if (!StorableText.IsStorable(hello.Version) || !StorableText.IsStorable(hello.Region) || !StorableText.IsStorable(hello.SessionLimits)
            || hello.Inventory.Any(i => !StorableText.IsStorable(i.SessionId)))
            return ("invalid_hello", $"version, region, sessionLimits and inventory session ids {StorableText.Problem}");
        // Checked against the protocol's list, not only for presence: an item with a state nobody knows would be left out of
        // the tracked inventory, and reconciliation would fail its running session as lost and stop it at the next hello.
        if (hello.Inventory.FirstOrDefault(i => !ObservedStates.All.Contains(i.State)) is { } unknown)
            return ("invalid_hello", string.IsNullOrEmpty(unknown.State)
                ? $"inventory item '{unknown.SessionId}' has no state; {KnownStates}"
                : $"inventory item '{unknown.SessionId}' has the unknown state '{Quoted(unknown.State)}'; {KnownStates}");
        return null;
    }

    private async Task ReadLoopAsync(AgentConnection connection, FrameReader reader, ChannelWriter<AgentReport> reports)
    {
        while (!connection.Lifetime.IsCancellationRequested)
        {
            var status = await reader.ReadAsync(connection.Socket, connection.Lifetime);
            if (status == FrameReadStatus.Closed)
            {
                await connection.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye");
                return;
            }
            if (status != FrameReadStatus.Text)
            {
                await ViolationAsync(connection, status == FrameReadStatus.TooLarge ? "frame_too_large" : "malformed", DescribeBadFrame(status));
                return;
            }
            var now = time.GetUtcNow();
            if (!registry.Heard(connection, now))
            {
                await connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, "replaced by a newer connection or timed out");
                return;
            }
            if (!ProtocolJson.TryDecode(reader.Message.Span, out var envelope, out var error))
            {
                await ViolationAsync(connection, envelope is null ? "malformed" : "unsupported_version", error!);
                return;
            }
            try
            {
                await DispatchAsync(connection, envelope!, reports);
            }
            catch (ProtocolException ex)
            {
                await ViolationAsync(connection, "malformed", ex.Message);
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException && ex is not WebSocketException)
            {
                // A database failure while applying one report must not drop the agent: unfinished commands
                // are redelivered and the agent re-reports their results.
                logger.LogError(HubEvents.HubLoopFailed, ex, "Could not apply '{Type}' from agent {AgentId}", envelope!.Type, connection.AgentId);
            }
            statusWriter.Record(connection, now);
        }
    }

    private async Task DispatchAsync(AgentConnection connection, Envelope envelope, ChannelWriter<AgentReport> reports)
    {
        var ct = connection.Lifetime;
        switch (envelope.Type)
        {
            case MessageTypes.Heartbeat:
                var heartbeat = envelope.PayloadAs<HeartbeatPayload>();
                connection.Draining = heartbeat.Draining;
                connection.ActiveSessions = Math.Max(0, heartbeat.ActiveSessions);
                connection.ReportedCapacity = Math.Max(0, heartbeat.MaxSessions);
                metrics.HeartbeatReceived();
                break;
            // Parsed here, so a malformed report closes the connection at once; applied by the report pump.
            // Ids with U+0000 are malformed (PostgreSQL refuses them, and with them the batch of other agents' reports they
            // would join), and so is a session id longer than sessions.id (an unknown one is tracked, and reconciliation
            // writes a stop for it); an error or reason, which may quote an app's own output, is kept with the character
            // replaced (and cut to its column's width where it is applied).
            case MessageTypes.Ack:
                var ack = envelope.PayloadAs<AckPayload>();
                RequireText(envelope.Type, "commandId", ack.CommandId);
                await reports.WriteAsync(AgentReport.Of(ack), ct);
                break;
            case MessageTypes.Result:
                var result = envelope.PayloadAs<ResultPayload>();
                RequireText(envelope.Type, "commandId", result.CommandId);
                await reports.WriteAsync(AgentReport.Of(result with { Error = StorableText.Clean(result.Error) }), ct);
                break;
            case MessageTypes.SessionStatus:
                var status = envelope.PayloadAs<SessionStatusPayload>();
                RequireText(envelope.Type, "sessionId", status.SessionId, Sessions.SessionNames.MaxIdLength);
                RequireText(envelope.Type, "state", status.State);
                if (!ObservedStates.All.Contains(status.State))
                    throw new ProtocolException($"'{envelope.Type}' payload is malformed: 'state' is '{Quoted(status.State)}'; {KnownStates}");
                await reports.WriteAsync(AgentReport.Of(status with { Reason = StorableText.Clean(status.Reason) }), ct);
                break;
            default:
                // Contract §3: unknown types are logged and ignored, so newer agents can talk to older control planes.
                logger.LogWarning(HubEvents.UnknownMessageType, "Agent {AgentId} sent a message of unknown or unexpected type '{Type}'; ignored",
                    connection.AgentId, envelope.Type.Length > 64 ? envelope.Type[..64] : envelope.Type);
                break;
        }
    }

    /// <summary>Said when an agent reports a session state outside <see cref="ObservedStates.All"/>.</summary>
    private static readonly string KnownStates = $"a state is one of {string.Join(", ", ObservedStates.All)}";

    /// <summary>An agent's text quoted in a refusal: at most 64 characters, U+0000 shown as U+FFFD.</summary>
    private static string Quoted(string text) => StorableText.Clean(StorableText.Truncate(text, 64))!;

    /// <summary>
    /// System.Text.Json lets an explicit <c>null</c> through even for required members: a report without the id or state
    /// it is about is the wrong shape, refused here like any other (instead of failing later, in the report pump). Nor
    /// may it hold text the database cannot store (<see cref="StorableText"/>, or longer than <paramref name="maxLength"/>
    /// where it may be written): the report would fail the batch it joins.
    /// </summary>
    private static void RequireText(string type, string field, string? value, int? maxLength = null)
    {
        if (string.IsNullOrEmpty(value))
            throw new ProtocolException($"'{type}' payload is malformed: '{field}' must be a non-empty string.");
        if (value.Length > maxLength)
            throw new ProtocolException($"'{type}' payload is malformed: '{field}' must be at most {maxLength} characters.");
        if (!StorableText.IsStorable(value)) throw new ProtocolException($"'{type}' payload is malformed: '{field}' {StorableText.Problem}");
    }

    /// <summary>
    /// Applies the connection's acks, results and session events in the order the agent sent them, taking
    /// everything queued since the last pass as one batch: acks and results go to the database set-based in one
    /// transaction (a busy agent costs a few statements per batch, not several per command); a session event ends a
    /// run, so every session still sees its reports in the order they were sent.
    /// </summary>
    private async Task PumpReportsAsync(AgentConnection connection, ChannelReader<AgentReport> reader, CancellationToken ct)
    {
        var batch = new List<AgentReport>(MaxReportBatch);
        try
        {
            while (await reader.WaitToReadAsync(ct))
            {
                batch.Clear();
                while (batch.Count < MaxReportBatch && reader.TryRead(out var report)) batch.Add(report);
                await connection.ProcessingLock.WaitAsync(ct);
                try
                {
                    // Refused: the connection is closing, and what it reported after that is not applied.
                    if (!await ApplyReportsAsync(connection, batch, ct)) return;
                }
                finally
                {
                    connection.ProcessingLock.Release();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Shutdown, or the drain after the socket ended took too long: unfinished commands are redelivered
            // on the next connection and the agent reports them again.
        }
    }

    /// <summary>False when a report was refused (too many unknown sessions) and the connection closed.</summary>
    private async Task<bool> ApplyReportsAsync(AgentConnection connection, List<AgentReport> batch, CancellationToken ct)
    {
        var acks = new List<AckPayload>();
        var received = new List<ResultPayload>();
        foreach (var report in batch)
        {
            if (report.Ack is { } ack)
            {
                acks.Add(ack);
            }
            else if (report.Result is { } result)
            {
                received.Add(result);
            }
            else if (report.Status is { } status)
            {
                if (!await FlushAsync()) return false;
                if (!await ApplyStatusesAsync(connection, status, null, ct)) return false;
            }
        }
        return await FlushAsync();

        async Task<bool> FlushAsync()
        {
            if (acks.Count == 0 && received.Count == 0) return true;
            // Events held back by an outage came before these in the agent's order: a held 'running' applied after a later
            // stop's result would track the stopped session again, and reconciliation would stop it as an orphan.
            if (connection.UnappliedStatuses.Count > 0 && !await ApplyStatusesAsync(connection, null, null, ct)) return false;
            var (a, r) = (acks.ToList(), received.ToList());
            acks.Clear();
            received.Clear();
            await GuardAsync(async () =>
            {
                foreach (var applied in await results.ApplyAsync(connection.AgentId, a, r, ct))
                    if (applied.Command.SessionId is { } sessionId)
                        TrackResult(connection, sessionId, applied.Command.Type, applied.Success);
                // Forgotten whether applied or ignored: an ignored result's command is final already (expired, often by another
                // replica, whose expiry cannot reach this connection; or finished by the agent's other connection), or unknown
                // here. Kept, it stayed remembered for the connection's life.
                foreach (var result in r) connection.ForgetDelivery(result.CommandId);
            }, r.Count > 0 ? MessageTypes.Result : MessageTypes.Ack);
            return true;
        }

        async Task GuardAsync(Func<Task> apply, string type)
        {
            try
            {
                await apply();
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A database failure while applying reports must not drop the agent: unfinished commands are
                // redelivered and the agent re-reports their results.
                logger.LogError(HubEvents.HubLoopFailed, ex, "Could not apply '{Type}' reports from agent {AgentId}", type, connection.AgentId);
            }
        }
    }

    /// <summary>
    /// Applies the <c>session.status</c> events a database failure left (<see cref="AgentConnection.UnappliedStatuses"/>),
    /// then <paramref name="status"/> when given, in the order the agent sent them; what the database does not take waits
    /// for the next try. False when one was refused (too many unknown sessions) and the connection closed. With
    /// <paramref name="outage"/> (reconciliation's pass), a database outage is left to it to log.
    /// </summary>
    private async Task<bool> ApplyStatusesAsync(AgentConnection connection, SessionStatusPayload? status, DatabaseOutageLog? outage,
        CancellationToken ct)
    {
        var waiting = connection.UnappliedStatuses;
        if (status is not null) Hold(connection, status);
        while (waiting.Count > 0)
        {
            var next = waiting[0];
            bool admitted;
            try
            {
                admitted = await observations.ApplyAsync(connection, next, ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                if (outage?.Failed(ex) != true)
                    logger.LogError(HubEvents.HubLoopFailed, ex, "Could not apply '{Type}' reports from agent {AgentId}; {Count} kept for the next try",
                        MessageTypes.SessionStatus, connection.AgentId, waiting.Count);
                return true;
            }
            waiting.RemoveAt(0);
            if (!admitted)
            {
                await ViolationAsync(connection, TooManySessions,
                    $"more than {connection.TrackedSessionLimit} sessions reported, {next.SessionId} unknown here");
                return false;
            }
        }
        return true;
    }

    /// <summary>Queues <paramref name="status"/> behind the held-back events (at most the tracking limit: the oldest goes).</summary>
    private void Hold(AgentConnection connection, SessionStatusPayload status)
    {
        if (connection.HoldStatus(status) is { } dropped)
            logger.LogWarning(HubEvents.HubLoopFailed, "Dropped the oldest of {Count} unapplied session events of agent {AgentId} (session {SessionId} {ObservedState}); its next hello settles it",
                connection.UnappliedStatuses.Count, connection.AgentId, dropped.SessionId, dropped.State);
    }

    /// <summary>
    /// What an applied result says about the agent's inventory. A failed start says nothing: the agent may run that
    /// session all the same (it re-adopted it after dying between saving the session and saving the start's result, and
    /// answered the start as interrupted), and removing it here had the next reconciliation fail a running session as
    /// "lost on agent", with no stop ever written for it. The agent's own word (hello, session events) removes entries.
    /// </summary>
    private static void TrackResult(AgentConnection connection, string sessionId, string type, bool success)
    {
        switch (type, success)
        {
            case (CommandTypes.SessionStart, true) or (CommandTypes.SessionWake, true):
                connection.Inventory[sessionId] = ObservedStates.Running;
                break;
            case (CommandTypes.SessionHibernate, true):
                connection.Inventory[sessionId] = ObservedStates.Hibernated;
                break;
            case (CommandTypes.SessionStop, true):
                connection.Inventory.Remove(sessionId);
                break;
        }
    }

    private async Task ReconcilePeriodicallyAsync(AgentConnection connection, DatabaseOutageLog outage)
    {
        using var timer = new PeriodicTimer(_options.ReconcileInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(connection.Lifetime))
                await ReconcileAsync(connection, outage);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <param name="outage">The connection's, used by the hello's pass and the periodic ones (never at once: both hold its processing lock).</param>
    private async Task ReconcileAsync(AgentConnection connection, DatabaseOutageLog outage)
    {
        await connection.ProcessingLock.WaitAsync(connection.Lifetime);
        try
        {
            // Events an outage held back first: reconciliation compares the database with the inventory they update. While
            // some still wait, it waits too: a session they end is not in the inventory (a hello's ended one never was)
            // and would be failed as lost; the database just refused them anyway, so the next interval tries again.
            if (connection.UnappliedStatuses.Count > 0 && !await ApplyStatusesAsync(connection, null, outage, connection.Lifetime)) return;
            if (connection.UnappliedStatuses.Count > 0) return;
            await reconciler.ReconcileAsync(connection, connection.Lifetime);
            outage.Succeeded();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            if (!outage.Failed(ex))
                logger.LogError(HubEvents.HubLoopFailed, ex, "Reconciliation of agent {AgentId} failed; it is retried on the next interval", connection.AgentId);
        }
        finally
        {
            connection.ProcessingLock.Release();
        }
    }

    private async Task<bool> RefuseAsync(AgentConnection connection, string code, string reason)
    {
        logger.LogWarning(HubEvents.HandshakeRefused, "Refused agent {AgentId}: {Code}: {Reason}", connection.AgentId, code, reason);
        await SendRefusedAndCloseAsync(connection, code, reason);
        return false;
    }

    private async Task ViolationAsync(AgentConnection connection, string code, string reason)
    {
        logger.LogWarning(HubEvents.ProtocolViolation, "Closing agent {AgentId} connection {ConnectionId}: {Code}: {Reason}",
            connection.AgentId, connection.ConnectionId, code, reason);
        await SendRefusedAndCloseAsync(connection, code, reason);
    }

    private async Task SendRefusedAndCloseAsync(AgentConnection connection, string code, string reason)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.Lifetime);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            await connection.SendAsync(Envelope.Create(MessageTypes.Refused, new RefusedPayload { Code = code, Reason = reason }, time.GetUtcNow()), timeout.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The agent may already be gone (e.g. while it still pushes an oversized frame); closing is what matters.
        }
        await connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, CloseDescription($"{code}: {reason}"));
    }

    private static string DescribeBadFrame(FrameReadStatus status) => status == FrameReadStatus.TooLarge
        ? $"frame exceeds the {ProtocolJson.MaxFrameBytes}-byte limit"
        : "binary frames are not part of the control protocol; send one JSON envelope per text frame";

    private static string CloseDescription(string text)
    {
        var cut = text.Length > MaxCloseDescriptionBytes ? text[..MaxCloseDescriptionBytes] : text;
        while (Encoding.UTF8.GetByteCount(cut) > MaxCloseDescriptionBytes) cut = cut[..^1];
        return cut;
    }
}
