using System.Net;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class UnmatchedRequestsTests(ControlPlaneFixture cp)
{
    [Fact]
    public async Task Unknown_path_is_a_json_404_even_without_credentials()
    {
        using var response = await cp.Client().GetAsync("/api/v1/no-such-thing");
        var json = await response.ShouldBeErrorAsync(HttpStatusCode.NotFound);
        json.GetProperty("message").GetString()!.ShouldContain("/api/v1/no-such-thing");
    }

    [Fact]
    public async Task Non_json_body_to_a_json_endpoint_is_415_not_404()
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.PostRawAsync("/api/v1/sessions", "template=xterm", "text/plain");
        await response.ShouldBeErrorAsync(HttpStatusCode.UnsupportedMediaType);
    }

    [Fact]
    public async Task Wrong_method_on_a_known_path_is_405_with_allow()
    {
        var admin = await cp.AdminClientAsync();
        using var response = await admin.PutAsync("/api/v1/sessions", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"));
        await response.ShouldBeErrorAsync(HttpStatusCode.MethodNotAllowed);
        response.Content.Headers.Allow.ShouldContain("POST");
    }
}

public sealed class UnmatchedRequestsTests_Sqlite(SqliteControlPlane cp) : UnmatchedRequestsTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class UnmatchedRequestsTests_Postgres(PostgresControlPlane cp) : UnmatchedRequestsTests(cp), IClassFixture<PostgresControlPlane>;
