using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Agents;

public static class AgentsApi
{
    public static IServiceCollection AddStreamSpaceAgents(this IServiceCollection services, StreamSpaceOptions options) => services;
    public static IEndpointRouteBuilder MapAgentsApi(this IEndpointRouteBuilder routes) => routes;
}
