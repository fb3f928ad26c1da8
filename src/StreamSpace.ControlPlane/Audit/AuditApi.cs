namespace StreamSpace.ControlPlane.Audit;

/// <summary><c>GET /api/v1/audit</c>. (Being built.)</summary>
public static class AuditApi
{
    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder routes) => routes;
}
