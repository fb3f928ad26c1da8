using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Default deny (design §2.5): every route declares who may call it. The enumeration covers every
/// endpoint the app maps, including ones added later by other features.
/// </summary>
public sealed class AuthorizationTests(SqliteControlPlane cp) : IClassFixture<SqliteControlPlane>
{
    private IReadOnlyList<RouteEndpoint> AllRouteEndpoints() =>
        ((IEndpointRouteBuilder)cp.App).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>().ToList();

    private static string Describe(RouteEndpoint e) =>
        $"{string.Join(",", e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["*"])} /{e.RoutePattern.RawText?.TrimStart('/')} ({e.DisplayName})";

    [Fact]
    public void Every_endpoint_names_a_policy_or_is_explicitly_anonymous()
    {
        var endpoints = AllRouteEndpoints();
        var undeclared = endpoints
            .Where(e => e.Metadata.GetMetadata<IAllowAnonymous>() is null
                        && !e.Metadata.GetOrderedMetadata<IAuthorizeData>().Any(a => !string.IsNullOrEmpty(a.Policy) || !string.IsNullOrEmpty(a.Roles)))
            .Select(Describe)
            .ToList();
        undeclared.ShouldBeEmpty("Endpoints without RequireAuthorization(Policies.X) or AllowAnonymous():\n" + string.Join("\n", undeclared));
    }

    [Fact]
    public void The_enumeration_sees_the_known_endpoints()
    {
        // Guards the test above against passing vacuously (e.g. if endpoints moved to another data source).
        var patterns = AllRouteEndpoints().Select(e => "/" + e.RoutePattern.RawText!.TrimStart('/').TrimEnd('/')).ToHashSet();
        patterns.ShouldContain("/api/v1/auth/login");
        patterns.ShouldContain("/api/v1/users/me");
        patterns.ShouldContain("/api/v1/users");
        patterns.ShouldContain("/api/v1/users/{id}");
        patterns.ShouldContain("/api/v1/audit");
        patterns.ShouldContain("/healthz");
        patterns.ShouldContain("/readyz");
        patterns.ShouldContain("/metrics");
    }

    public static TheoryData<string, string> UserEndpoints => new()
    {
        { "GET", "/api/v1/users/me" },
    };

    public static TheoryData<string, string> AdminEndpoints => new()
    {
        { "GET", "/api/v1/users" },
        { "POST", "/api/v1/users" },
        { "PATCH", "/api/v1/users/some-id" },
        { "DELETE", "/api/v1/users/some-id" },
        { "GET", "/api/v1/users/some-id" },
        { "GET", "/api/v1/audit" },
        { "GET", "/api/v1/audit?user=admin&limit=0" },
        { "GET", "/api/v1/agents" },
        { "POST", "/api/v1/agents" },
        { "GET", "/api/v1/agents/some-agent" },
        // Authorization comes before the query is read: a bad or a good ?force tells a non-admin nothing.
        { "DELETE", "/api/v1/agents/some-agent?force=true" },
        { "DELETE", "/api/v1/agents/some-agent?force=maybe" },
        { "DELETE", "/api/v1/agents/connect" },
        { "POST", "/api/v1/agents/some-agent/drain" },
        { "POST", "/api/v1/agents/some-agent/undrain" },
        { "POST", "/api/v1/agents/some-agent/rotate-token" },
    };

    private static HttpRequestMessage Request(string method, string path) => new(new HttpMethod(method), path)
    {
        Content = method is "POST" or "PATCH" ? JsonContent.Create(new { }) : null,
    };

    [Theory]
    [MemberData(nameof(UserEndpoints))]
    [MemberData(nameof(AdminEndpoints))]
    public async Task Anonymous_is_401(string method, string path)
    {
        await (await cp.Client().SendAsync(Request(method, path), TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    [Theory]
    [MemberData(nameof(AdminEndpoints))]
    public async Task Plain_user_is_403_on_admin_endpoints(string method, string path)
    {
        var (client, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("plain"));
        await (await client.SendAsync(Request(method, path), TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Plain_user_cannot_raise_own_role()
    {
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("climber"));
        await (await client.PatchAsJsonAsync($"/api/v1/users/{id}", new { role = "admin" }, TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        var me = await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        me.GetProperty("role").GetString().ShouldBe("user");
    }

    [Fact]
    public async Task Plain_user_reaches_user_endpoints()
    {
        var (client, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("ok"));
        (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }
}
