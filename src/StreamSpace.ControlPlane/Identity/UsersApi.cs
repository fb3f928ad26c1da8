namespace StreamSpace.ControlPlane.Identity;

/// <summary>Users: <c>GET /api/v1/users/me</c>, admin management. (Being built.)</summary>
public static class UsersApi
{
    public static IEndpointRouteBuilder MapUsersApi(this IEndpointRouteBuilder routes) => routes;
}
