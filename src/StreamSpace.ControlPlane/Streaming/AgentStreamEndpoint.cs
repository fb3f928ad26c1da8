using System.Net.WebSockets;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Net.Http.Headers;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary><c>GET /api/v1/agents/streams/{streamId}</c>: the agent's one-time data WebSocket of a stream (design §6).</summary>
public static class AgentStreamEndpoint
{
    public static IEndpointRouteBuilder MapAgentStreamEndpoint(this IEndpointRouteBuilder routes)
    {
        // Anonymous at the routing level on purpose: the credential is the one-time data token that
        // travelled to the agent inside its authenticated stream.open command; it is checked (and
        // burnt) below before the upgrade. Agent tokens are not accepted here.
        routes.MapGet("/api/v1/agents/streams/{streamId}", ConnectAsync).AllowAnonymous().WithTags("Streaming")
            .ProducesWebSocket("An agent's data WebSocket for one viewer's stream.")
            .ProducesApiError(StatusCodes.Status400BadRequest, "Not a WebSocket request.")
            .ProducesApiError(StatusCodes.Status401Unauthorized, "The stream is unknown, expired or already connected, or the bearer token does not match it.")
            // Streams wait in this replica's memory: no lookup by id (404) and no database (503).
            .WithoutApiError(StatusCodes.Status404NotFound).WithoutApiError(StatusCodes.Status503ServiceUnavailable);
        return routes;
    }

    public static async Task<Results<EmptyHttpResult, JsonHttpResult<ApiError>>> ConnectAsync(
        string streamId, HttpContext http, StreamRendezvous rendezvous, ILoggerFactory loggers)
    {
        if (!http.WebSockets.IsWebSocketRequest)
            return ApiErrors.Of(StatusCodes.Status400BadRequest, "WebSocket required", "This endpoint speaks WebSocket only.");
        var pending = rendezvous.Claim(streamId, BearerToken(http.Request));
        if (pending is null)
            return ApiErrors.Of(StatusCodes.Status401Unauthorized, "Invalid stream token",
                "The stream is unknown, expired or already connected, or the bearer token does not match it.");

        // From here on this connection only relays (the viewer's request runs the relay; this one waits for its end).
        RelayTransportTuning.PreferInlineCompletions(http);
        using var socket = await http.WebSockets.AcceptWebSocketAsync();
        if (!pending.Deliver(socket))
        {
            // The viewer gave up (rendezvous timeout or disconnect) between the claim and now.
            await StreamRelay.SendCloseAsync(socket, WebSocketCloseStatus.NormalClosure, "The viewer is gone.", TimeSpan.FromSeconds(5));
            return TypedResults.Empty;
        }
        loggers.CreateLogger("StreamSpace.Streaming.Relay").LogDebug("Agent side of stream {StreamId} connected", streamId);
        // The socket belongs to this request: it must stay open until the relay is done with it.
        await pending.RelayDone;
        return TypedResults.Empty;
    }

    private static string? BearerToken(HttpRequest request)
    {
        var header = request.Headers[HeaderNames.Authorization].ToString();
        return header.StartsWith("Bearer ", StringComparison.Ordinal) ? header["Bearer ".Length..].Trim() : null;
    }
}
