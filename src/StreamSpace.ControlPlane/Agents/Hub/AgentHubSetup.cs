namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>The agent hub: control WebSocket, liveness, command delivery, reconciliation. (Being built.)</summary>
public static class AgentHubSetup
{
    public static IServiceCollection AddAgentHub(this IServiceCollection services) => services;
    public static IEndpointRouteBuilder MapAgentHub(this IEndpointRouteBuilder routes) => routes;
}
