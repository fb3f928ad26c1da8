using System.Net;
using System.Text.Json;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using StreamSpace.ControlPlane.Ops;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class OpsTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Healthz_and_readyz_are_200_without_credentials()
    {
        var health = await (await cp.Client().GetAsync("/healthz", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        health.GetProperty("status").GetString().ShouldBe("ok");
        var ready = await (await cp.Client().GetAsync("/readyz", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        ready.GetProperty("database").GetString().ShouldBe("ok");
    }

    [Theory]
    [InlineData("/healthz")]
    [InlineData("/readyz")]
    [InlineData("/sessions/any-id/view")]
    public async Task Health_checks_and_the_viewer_page_answer_head_as_get(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Head, path);
        using var response = await cp.Client().SendAsync(request, TestContext.Current.CancellationToken);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken)).ShouldBeEmpty();
    }

    [Fact]
    public async Task Metrics_are_prometheus_text_with_request_metrics()
    {
        await cp.Client().GetAsync("/healthz", TestContext.Current.CancellationToken);
        var response = await cp.Client().GetAsync("/metrics", TestContext.Current.CancellationToken);
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        text.ShouldContain("http_server_request_duration_seconds");
        text.ShouldContain("# TYPE");
    }

    [Fact]
    public void OpenTelemetry_service_name_is_streamspace_control_plane()
    {
        var provider = cp.App.Services.GetRequiredService<MeterProvider>();
        var resource = provider.GetResource();
        resource.Attributes.ShouldContain(new KeyValuePair<string, object>("service.name", OpsEndpoints.ServiceName));
        OpsEndpoints.ServiceName.ShouldBe("streamspace-control-plane");
    }

    [Fact]
    public async Task OpenApi_document_lists_the_users_api()
    {
        var doc = await (await cp.Client().GetAsync("/openapi/v1.json", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var paths = doc.GetProperty("paths");
        paths.TryGetProperty("/api/v1/users/me", out _).ShouldBeTrue();
        paths.TryGetProperty("/api/v1/auth/login", out _).ShouldBeTrue();
        paths.TryGetProperty("/api/v1/audit", out _).ShouldBeTrue();
    }

    [Fact]
    public async Task OpenApi_document_lists_each_endpoints_error_answers_with_the_error_body()
    {
        var doc = await (await cp.Client().GetAsync("/openapi/v1.json", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        doc.GetProperty("components").GetProperty("schemas").GetProperty("ApiError").GetProperty("required")
            .EnumerateArray().Select(e => e.GetString()).ShouldBe(["error", "message"], ignoreOrder: true);
        Dictionary<string, JsonElement> Responses(string path, string method) =>
            doc.GetProperty("paths").GetProperty(path).GetProperty(method).GetProperty("responses").EnumerateObject().ToDictionary(p => p.Name, p => p.Value);

        var operations = 0;
        foreach (var path in doc.GetProperty("paths").EnumerateObject().Where(p => p.Name.StartsWith("/api/", StringComparison.Ordinal)))
            foreach (var operation in path.Value.EnumerateObject())
            {
                operations++;
                var responses = operation.Value.GetProperty("responses").EnumerateObject().ToDictionary(p => p.Name, p => p.Value);
                // Every error answer is the {error, message} body, described in words rather than by the status's name.
                foreach (var (status, response) in responses.Where(r => r.Key[0] is '4' or '5'))
                {
                    response.GetProperty("content").GetProperty("application/json").GetProperty("schema").GetProperty("$ref").GetString()
                        .ShouldBe("#/components/schemas/ApiError", $"{operation.Name} {path.Name} {status}");
                    response.GetProperty("description").GetString().ShouldNotBe(
                        Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(int.Parse(status, System.Globalization.CultureInfo.InvariantCulture)),
                        $"{operation.Name} {path.Name} {status}");
                }
                if (path.Name != "/api/v1/agents/streams/{streamId}") responses.Keys.ShouldContain("503", $"{operation.Name} {path.Name}");
                if (path.Name is not ("/api/v1/auth/login" or "/api/v1/agents/streams/{streamId}")) responses.Keys.ShouldContain("401", $"{operation.Name} {path.Name}");
            }
        operations.ShouldBeGreaterThanOrEqualTo(30);

        // By kind: no input, no 400; admin only, 403; a JSON body, 413 and 415; an id, 404.
        Responses("/api/v1/users/me", "get").Keys.ShouldBe(["200", "401", "503"], ignoreOrder: true);
        Responses("/api/v1/users", "get").Keys.ShouldContain("403");
        Responses("/api/v1/agents/{agentId}", "delete").Keys.ShouldBe(["204", "400", "401", "403", "404", "409", "503"], ignoreOrder: true);
        // Named by the endpoint itself.
        var create = Responses("/api/v1/sessions", "post");
        create.Keys.ShouldBe(["201", "400", "401", "403", "413", "415", "503"], ignoreOrder: true);
        create["503"].GetProperty("description").GetString()!.ShouldContain("'reasons'");
        Responses("/api/v1/auth/login", "post").Keys.ShouldContain("429");
        var vnc = Responses("/api/v1/sessions/{id}/vnc", "get");
        vnc.Keys.ShouldContain("101");
        vnc.Keys.ShouldNotContain("200");
        vnc["401"].GetProperty("description").GetString()!.ShouldContain("ticket");
        // A template is read by hand (JSON or YAML): its body is documented all the same, and a create by name has no 404.
        var templateCreate = doc.GetProperty("paths").GetProperty("/api/v1/templates/{name}").GetProperty("post");
        templateCreate.GetProperty("requestBody").GetProperty("content").EnumerateObject().Select(c => c.Name)
            .ShouldBe(["application/json", "application/yaml"], ignoreOrder: true);
        templateCreate.GetProperty("responses").TryGetProperty("404", out _).ShouldBeFalse();
    }

    [Fact]
    public async Task An_address_longer_than_8_KiB_is_a_json_414_not_kestrels_bare_one()
    {
        var ct = TestContext.Current.CancellationToken;
        // Path and query of 8 193 bytes: one over. Anonymous: refused before authentication, as Kestrel did.
        var longQuery = "/api/v1/sessions?user=" + new string('x', RequestTargetLimitMax - "/api/v1/sessions?user=".Length + 1);
        var error = await (await cp.Client().GetAsync(longQuery, ct)).ShouldBeErrorAsync(HttpStatusCode.RequestUriTooLong);
        error.GetProperty("error").GetString().ShouldBe("URI too long");
        error.GetProperty("message").GetString().ShouldBe("The request's path and query are 8193 bytes long; at most 8192 are taken. Send long input in a request body.");
        // A page's address too, and one of 60 KiB (Kestrel's own limit, now above it, used to answer from 8 KiB with no body).
        await (await cp.Client().GetAsync("/sessions?x=" + new string('y', 9000), ct)).ShouldBeErrorAsync(HttpStatusCode.RequestUriTooLong);
        await (await cp.Client().GetAsync("/api/v1/templates?" + new string('z', 60 * 1024), ct)).ShouldBeErrorAsync(HttpStatusCode.RequestUriTooLong);
        // At the limit the request goes on to the API (here: no token).
        var atLimit = "/api/v1/sessions?user=" + new string('x', RequestTargetLimitMax - "/api/v1/sessions?user=".Length);
        await (await cp.Client().GetAsync(atLimit, ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    private const int RequestTargetLimitMax = StreamSpace.ControlPlane.Hosting.RequestTargetLimit.MaxBytes;

    [Fact]
    public async Task Unknown_route_is_a_json_404()
    {
        await (await cp.Client().GetAsync("/api/v1/nothing-here", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }
}

public sealed class OpsTests_Sqlite(SqliteControlPlane cp) : OpsTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class OpsTests_Postgres(PostgresControlPlane cp) : OpsTests(cp), IClassFixture<PostgresControlPlane>;
