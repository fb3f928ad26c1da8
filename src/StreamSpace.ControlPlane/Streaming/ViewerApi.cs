using System.Net.WebSockets;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Streaming;

public sealed record ViewerTicketResponse(string Ticket, DateTimeOffset ExpiresAt, string Url);

/// <summary>
/// <c>POST /api/v1/sessions/{id}/viewer-ticket</c> and the viewer's WebSocket
/// <c>GET /api/v1/sessions/{id}/vnc?ticket=</c> (design §4, §6).
/// </summary>
public static class ViewerApi
{
    /// <summary>noVNC offers this WebSocket subprotocol for raw binary RFB frames.</summary>
    public const string BinarySubprotocol = "binary";

    public static IEndpointRouteBuilder MapViewerApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/sessions").WithTags("Streaming");
        group.MapPost("/{id}/viewer-ticket", IssueTicketAsync).RequireAuthorization(Policies.User)
            .ProducesApiError(StatusCodes.Status409Conflict, "The session is not running, or its agent is offline.");
        // Anonymous at the routing level on purpose: browsers cannot put an Authorization header on a
        // WebSocket, and the API token must never travel in a URL (invariant 6). The one-time, session-bound
        // ticket in the query string is the credential; ConnectAsync checks and consumes it before the upgrade.
        group.MapGet("/{id}/vnc", ConnectAsync).AllowAnonymous()
            .ProducesWebSocket("The WebSocket (binary frames of raw RFB) to the session's desktop.")
            .ProducesApiError(StatusCodes.Status400BadRequest, "Not a WebSocket request.")
            .ProducesApiError(StatusCodes.Status401Unauthorized, "No ticket, or one that is invalid, expired, used or revoked (an API token is never accepted here).")
            .ProducesApiError(StatusCodes.Status403Forbidden, "The Origin may not open the viewer, the ticket is for another session, or its user is disabled, gone or no longer allowed.")
            .ProducesApiError(StatusCodes.Status409Conflict, "The session is not running, or has no agent.");
        return routes;
    }

    public static async Task<Results<Ok<ViewerTicketResponse>, JsonHttpResult<ApiError>>> IssueTicketAsync(
        string id, HttpContext http, Db db, ViewerTicketStore tickets, CancellationToken ct)
    {
        var user = CurrentUser.From(http.User);
        StreamSession? session;
        await using (var conn = await db.OpenAsync(ct))
            session = await StreamSession.FindAsync(conn, id, ct);
        if (session is null || (session.UserId != user.Id && !user.IsAdmin))
            return ApiErrors.NotFound($"Session '{id}' was not found.");
        if (session.State != SessionState.Running)
            return ApiErrors.Conflict($"Session '{id}' is {session.State}; a viewer can connect only while it is running.");
        // Without its agent nobody can open the stream: say so now instead of letting the viewer wait for the rendezvous timeout.
        if (session.AgentId is null)
            return ApiErrors.Of(StatusCodes.Status409Conflict, "Agent offline", $"Session '{id}' has no agent to stream from.");
        if (session.AgentStatus != Agents.AgentStatus.Online)
            return ApiErrors.Of(StatusCodes.Status409Conflict, "Agent offline",
                $"Session '{id}' runs on agent '{session.AgentId}', which is {session.AgentStatus ?? "no longer registered"}; the viewer can connect when the agent is back online.");
        // Authentication (bearer or cookie) put the version the caller's token was checked at in the principal.
        if (!int.TryParse(http.User.FindFirst(TokenIssuer.TokenVersionClaim)?.Value, System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out var tokenVersion)
            || await tickets.IssueAsync(session.Id, user.Id, tokenVersion, ct) is not { } ticket)
            return ApiErrors.Of(StatusCodes.Status401Unauthorized, "Unauthorized", "Your account was changed while this request ran; sign in again.");
        var url = $"/api/v1/sessions/{Uri.EscapeDataString(session.Id)}/vnc?ticket={ticket.Ticket}";
        return TypedResults.Ok(new ViewerTicketResponse(ticket.Ticket, ticket.ExpiresAt, url));
    }

    public static async Task<Results<EmptyHttpResult, JsonHttpResult<ApiError>>> ConnectAsync(
        string id, HttpContext http, Db db, ViewerTicketStore tickets, StreamRendezvous rendezvous, IStreamOpener opener,
        SessionActivity activity, ViewerAccess access, AuditLog audit, IOptions<StreamingOptions> options, ILoggerFactory loggers,
        IHostApplicationLifetime lifetime, TimeProvider time, CancellationToken ct)
    {
        // Cross-site WebSocket hijacking: a page elsewhere must not be able to use a ticket it got hold of.
        if (!Web.BrowserOrigin.IsAllowed(http.Request, options.Value.AllowedOrigins))
            return ApiErrors.Forbidden("This origin may not open the viewer WebSocket.", "Origin not allowed");
        if (http.Request.Query.ContainsKey("access_token"))
            return Unauthorized("API token refused",
                "API tokens are never accepted in a URL; get a one-time ticket from POST /api/v1/sessions/{id}/viewer-ticket.");
        var ticket = http.Request.Query["ticket"].ToString();
        if (ticket.Length == 0)
            return Unauthorized("Ticket required", "Connect with ?ticket= from POST /api/v1/sessions/{id}/viewer-ticket.");
        if (!http.WebSockets.IsWebSocketRequest)
            return ApiErrors.Of(StatusCodes.Status400BadRequest, "WebSocket required", "This endpoint speaks WebSocket only (binary RFB frames).");

        var (refusal, holder) = await tickets.ConsumeAsync(ticket, id, ct);
        switch (refusal)
        {
            case TicketRefusal.Unknown when ticket.Count(c => c == '.') == 2:
                return Unauthorized("API token refused", "An API token is not a viewer ticket; get a one-time ticket from POST /api/v1/sessions/{id}/viewer-ticket.");
            case TicketRefusal.Unknown:
                return Unauthorized("Invalid ticket", "The viewer ticket is not valid; get a fresh one.");
            case TicketRefusal.Expired:
                return Unauthorized("Ticket expired", "The viewer ticket has expired; get a fresh one.");
            case TicketRefusal.AlreadyUsed:
                return Unauthorized("Ticket already used", "A viewer ticket works once; get a fresh one for every connection.");
            case TicketRefusal.OtherSession:
                return ApiErrors.Forbidden("The viewer ticket was issued for another session.", "Ticket for another session");
            case TicketRefusal.UserDisabled:
                return ApiErrors.Forbidden("The user this ticket was issued to is disabled or gone.");
            case TicketRefusal.TokensRevoked:
                return Unauthorized("Ticket revoked",
                    "The user's password, role or access changed after this viewer ticket was issued; sign in again and get a fresh one.");
        }

        StreamSession? session;
        await using (var conn = await db.OpenAsync(ct))
            session = await StreamSession.FindAsync(conn, id, ct);
        if (session is null || (session.UserId != holder!.UserId && holder.Role != Roles.Admin))
            return ApiErrors.NotFound($"Session '{id}' was not found.");
        if (session.State != SessionState.Running)
            return ApiErrors.Conflict($"Session '{id}' is {session.State}; a viewer can connect only while it is running.");
        if (session.AgentId is null)
            return ApiErrors.Conflict($"Session '{id}' has no agent to stream from.");

        // The end of the user's access (disabled, deleted, tokens revoked, no longer admin) ends the stream; tracked
        // before the upgrade, so a change that landed since the ticket was checked is still refused with a status.
        using var grant = await access.TrackAsync(holder, session.UserId, ct);
        if (grant.Ended.IsCancellationRequested)
            return ApiErrors.Forbidden(ViewerAccess.EndedReason, "Access ended");
        // An admin on somebody else's desktop sees it and can type into it: on the record before the first byte flows.
        if (holder.UserId != session.UserId)
            await audit.WriteSessionAsync(holder.Username, AuditActions.SessionViewed, session.Id, session.Username, $"owner={session.Username}", http, ct);

        var subprotocol = http.WebSockets.WebSocketRequestedProtocols.Contains(BinarySubprotocol) ? BinarySubprotocol : null;
        using var viewer = await http.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { SubProtocol = subprotocol });
        // Shutdown ends streams at once instead of letting them hold the host until its shutdown timeout.
        using var relayCt = CancellationTokenSource.CreateLinkedTokenSource(ct, lifetime.ApplicationStopping);
        // Still running on the same agent, as far as the control plane knows (asked now and then while the stream lasts).
        async Task<bool> StillRunningAsync(CancellationToken checkCt)
        {
            await using var conn = await db.OpenAsync(checkCt);
            return await StreamSession.FindAsync(conn, session.Id, checkCt) is { State: SessionState.Running } now && now.AgentId == session.AgentId;
        }
        await RelayAsync(http, viewer, session, rendezvous, opener, activity, grant, options.Value, time, StillRunningAsync,
            loggers.CreateLogger("StreamSpace.Streaming.Relay"), relayCt.Token);
        return TypedResults.Empty;
    }

    private static async Task RelayAsync(
        HttpContext http, WebSocket viewer, StreamSession session, StreamRendezvous rendezvous, IStreamOpener opener, SessionActivity activity,
        ViewerAccess.Grant grant, StreamingOptions options, TimeProvider time, Func<CancellationToken, Task<bool>> sessionRunning, ILogger logger, CancellationToken ct)
    {
        using var pending = rendezvous.Open(session.Id);
        var dataPath = StreamRendezvous.DataPath(pending.StreamId);
        var args = new StreamOpenArgs { StreamId = pending.StreamId, DataPath = dataPath, DataUrl = options.DataUrl(dataPath), Token = pending.Token };
        try
        {
            await opener.OpenAsync(session.AgentId!, session.Id, args, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            logger.LogError(ex, "Could not ask agent {AgentId} to open stream {StreamId} for session {SessionId}", session.AgentId, pending.StreamId, session.Id);
            await CloseViewerAsync(viewer, WebSocketCloseStatus.InternalServerError, "Could not ask the session's agent to open the stream.", options);
            return;
        }

        WebSocket agent;
        try
        {
            using var waiting = CancellationTokenSource.CreateLinkedTokenSource(ct, grant.Ended);
            agent = await pending.AgentSocket.WaitAsync(options.RendezvousTimeout, waiting.Token);
        }
        catch (TimeoutException)
        {
            logger.LogWarning("Agent {AgentId} did not open stream {StreamId} for session {SessionId} within {Timeout}",
                session.AgentId, pending.StreamId, session.Id, options.RendezvousTimeout);
            await CloseViewerAsync(viewer, WebSocketCloseStatus.EndpointUnavailable,
                $"The session's agent did not open the stream within {options.RendezvousTimeout.TotalSeconds:0} s; try again.", options);
            return;
        }
        catch (OperationCanceledException)
        {
            if (grant.Ended.IsCancellationRequested && !ct.IsCancellationRequested)
                await CloseViewerAsync(viewer, ViewerAccess.Grant.Close.Status, ViewerAccess.Grant.Close.Reason, options);
            return;
        }

        logger.LogInformation("Stream {StreamId} for session {SessionId} connected through agent {AgentId}", pending.StreamId, session.Id, session.AgentId);
        var mark = activity.Attach(session.Id);
        // Both sides are connected and the request's own work is done: from here on this connection only relays.
        RelayTransportTuning.PreferInlineCompletions(http);
        try
        {
            await StreamRelay.RunAsync(viewer, agent, mark, options.CloseTimeout, options.StallTimeout, time, logger, pending.StreamId, grant, ct, sessionRunning);
        }
        finally
        {
            activity.Detach(mark);
        }
    }

    private static async Task CloseViewerAsync(WebSocket viewer, WebSocketCloseStatus status, string reason, StreamingOptions options)
    {
        await StreamRelay.SendCloseAsync(viewer, status, reason, options.CloseTimeout);
        // Give the browser a moment to answer so it sees a clean close with the reason, not a reset.
        using var cts = new CancellationTokenSource(options.CloseTimeout);
        var scratch = new byte[1024];
        try
        {
            while (viewer.State == WebSocketState.CloseSent)
            {
                var r = await viewer.ReceiveAsync(Memory<byte>.Empty, cts.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                // Drain whatever the viewer sent before it saw our close.
                await viewer.ReceiveAsync(scratch.AsMemory(), cts.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
        {
        }
        StreamRelay.AbortIfOpen(viewer);
    }

    private static JsonHttpResult<ApiError> Unauthorized(string error, string message) =>
        ApiErrors.Of(StatusCodes.Status401Unauthorized, error, message);
}
