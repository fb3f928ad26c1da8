using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.HttpResults;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>The agent hub: control WebSocket, liveness, command delivery, results and reconciliation.</summary>
public static class AgentHubSetup
{
    public const string ConnectPath = "/api/v1/agents/connect";

    public static IServiceCollection AddAgentHub(this IServiceCollection services)
    {
        services.AddAuthentication()
            .AddScheme<AuthenticationSchemeOptions, AgentTokenAuthentication>(AgentTokenAuthentication.SchemeName, configureOptions: null);
        services.AddAuthorizationBuilder()
            .AddPolicy(Policies.Agent, p => p
                .AddAuthenticationSchemes(AgentTokenAuthentication.SchemeName)
                .RequireAuthenticatedUser()
                .RequireClaim(AgentTokenAuthentication.AgentIdClaim));
        services.AddSingleton<AgentTokenHashes>();
        services.AddSingleton<AgentConnectionRegistry>();
        services.AddSingleton<HubMetrics>();
        services.AddSingleton<AgentStatusWriter>();
        services.AddSingleton<CommandResults>();
        services.AddSingleton<SessionObservations>();
        services.AddSingleton<AgentReconciler>();
        services.AddSingleton<AgentHub>();
        services.AddSingleton<CommandDelivery>();
        services.AddHostedService(sp => sp.GetRequiredService<CommandDelivery>());
        services.AddSingleton<DatabaseNotificationListener>();
        services.AddHostedService(sp => sp.GetRequiredService<DatabaseNotificationListener>());
        services.AddHostedService<AgentLivenessMonitor>();
        services.AddSingleton<CommandPruner>();
        services.AddHostedService(sp => sp.GetRequiredService<CommandPruner>());
        return services;
    }

    public static IEndpointRouteBuilder MapAgentHub(this IEndpointRouteBuilder routes)
    {
        routes.MapGet(ConnectPath, ConnectAsync)
            .RequireAuthorization(Policies.Agent)
            .ProducesWebSocket("The agent's control channel (docs/protocol.md).")
            .ProducesApiError(StatusCodes.Status401Unauthorized, "The agent token is missing or not that agent's.")
            .ProducesApiError(StatusCodes.Status403Forbidden, "Not an agent's credential.")
            .WithTags("Agents")
            .WithSummary("Agent control channel (WebSocket). Authorization: Bearer <agent token>, X-StreamSpace-Agent-Id: <agentId>.");
        return routes;
    }

    private static async Task<Results<EmptyHttpResult, JsonHttpResult<ApiError>>> ConnectAsync(HttpContext http, AgentHub hub)
    {
        if (!http.WebSockets.IsWebSocketRequest)
            return ApiErrors.Of(StatusCodes.Status400BadRequest, "WebSocket required",
                "This is the agent control channel: open it as a WebSocket (GET with Upgrade: websocket).");
        var agentId = http.User.FindFirst(AgentTokenAuthentication.AgentIdClaim)!.Value;
        var tokenHash = http.User.FindFirst(AgentTokenAuthentication.TokenHashClaim)!.Value;
        using var socket = await http.WebSockets.AcceptWebSocketAsync();
        await hub.RunAsync(socket, agentId, tokenHash, http.RequestAborted);
        return TypedResults.Empty;
    }
}
