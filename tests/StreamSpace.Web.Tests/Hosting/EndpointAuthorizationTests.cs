using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Components.Endpoints;
using Microsoft.AspNetCore.Routing;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Hosting;

/// <summary>Default deny (design invariant 5), for the UI's endpoints too: each one says who may call it.</summary>
public sealed class EndpointAuthorizationTests(WebHostFixture host) : IClassFixture<WebHostFixture>
{
    [Fact]
    public void Every_endpoint_declares_who_may_call_it()
    {
        var endpoints = host.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        endpoints.ShouldContain(e => e.RoutePattern.RawText == "/signin");
        endpoints.ShouldContain(e => e.RoutePattern.RawText == "/sessions");
        endpoints.ShouldContain(e => e.RoutePattern.RawText != null && e.RoutePattern.RawText.StartsWith("/_blazor", StringComparison.Ordinal));

        var undeclared = endpoints
            .Where(e => e.Metadata.GetMetadata<IAllowAnonymous>() is null && e.Metadata.GetOrderedMetadata<IAuthorizeData>().Count == 0)
            .Select(e => $"{string.Join(',', e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? [])} {e.RoutePattern.RawText}")
            .ToList();
        undeclared.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("/", "user")]
    [InlineData("/sessions", "user")]
    [InlineData("/admin", "admin")]
    [InlineData("/admin/agents", "admin")]
    [InlineData("/admin/sessions", "admin")]
    [InlineData("/admin/users", "admin")]
    [InlineData("/admin/templates", "admin")]
    [InlineData("/admin/audit", "admin")]
    public void Pages_require_their_policy_and_are_not_opened_by_a_blanket_allow_anonymous(string page, string policy)
    {
        var endpoint = host.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Single(e => e.RoutePattern.RawText == page && e.Metadata.GetMetadata<ComponentTypeMetadata>() is not null);
        endpoint.Metadata.GetMetadata<IAllowAnonymous>().ShouldBeNull();
        endpoint.Metadata.GetOrderedMetadata<IAuthorizeData>().ShouldContain(a => a.Policy == policy);
    }
}
