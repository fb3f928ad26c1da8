namespace StreamSpace.ControlPlane.Sessions;

public static class SessionsApi
{
    public static IServiceCollection AddStreamSpaceSessions(this IServiceCollection services) => services;
    public static IEndpointRouteBuilder MapSessionsApi(this IEndpointRouteBuilder routes) => routes;
}
