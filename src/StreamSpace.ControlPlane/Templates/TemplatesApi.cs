namespace StreamSpace.ControlPlane.Templates;

public static class TemplatesApi
{
    public static IServiceCollection AddStreamSpaceTemplates(this IServiceCollection services) => services.AddSingleton<TemplateCatalog>();
    public static IEndpointRouteBuilder MapTemplatesApi(this IEndpointRouteBuilder routes) => routes;
}
