using System.Net;
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
    public async Task Unknown_route_is_a_json_404()
    {
        await (await cp.Client().GetAsync("/api/v1/nothing-here", TestContext.Current.CancellationToken)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }
}

public sealed class OpsTests_Sqlite(SqliteControlPlane cp) : OpsTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class OpsTests_Postgres(PostgresControlPlane cp) : OpsTests(cp), IClassFixture<PostgresControlPlane>;
