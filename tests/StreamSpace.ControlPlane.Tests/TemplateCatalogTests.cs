using System.Net;
using System.Net.Http.Json;
using Dapper;
using StreamSpace.ControlPlane.Templates;
using StreamSpace.ControlPlane.Tests.Infrastructure;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The built-in YAML files and their seeding at start-up.</summary>
public abstract class TemplateCatalogTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly string[] BuiltIns = ["chromium-browser", "firefox-browser", "xterm"];

    [Fact]
    public void The_built_in_files_load_and_validate()
    {
        var templates = TemplateCatalog.LoadBuiltIn(TemplateCatalog.BuiltInFolder);
        templates.Select(t => t.Name).ShouldBe(BuiltIns);
        var firefox = templates.Single(t => t.Name == "firefox-browser");
        firefox.Process!.Command.ShouldBe("firefox-esr --no-remote --new-instance");
        firefox.Stream!.Protocol.ShouldBe("vnc");
        foreach (var t in templates)
        {
            t.RunsOn(Platforms.Process).ShouldBeTrue();
            t.RunsOn(Platforms.Docker).ShouldBeTrue();
            t.RunsOn(Platforms.Kubernetes).ShouldBeTrue();
        }
    }

    [Fact]
    public void A_template_becomes_a_launch_spec_for_the_agent()
    {
        var xterm = TemplateCatalog.LoadBuiltIn(TemplateCatalog.BuiltInFolder).Single(t => t.Name == "xterm");
        var spec = xterm.ToLaunchSpec();
        spec.ProcessCommand.ShouldBe("xterm -fa Monospace -fs 11");
        spec.DockerImage.ShouldNotBeNullOrEmpty();
        spec.KubernetesImage.ShouldNotBeNullOrEmpty();
        spec.VncPort.ShouldBe(5900);
        spec.HomeMountPath.ShouldBe("/home/user");
    }

    [Fact]
    public async Task Seeding_again_and_concurrently_keeps_the_same_rows_and_never_overwrites_edits()
    {
        var admin = await cp.AdminClientAsync();
        var before = await RowsAsync();
        // All three were seeded at start-up (firefox-browser may already be gone: another test deletes it).
        before.Where(r => r.Builtin).Select(r => r.Name).ShouldBeSubsetOf(BuiltIns);
        before.Select(r => r.Name).ShouldContain("xterm");
        before.Select(r => r.Name).ShouldContain("chromium-browser");
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM settings WHERE key LIKE 'template.seeded:%'")).ShouldBe(BuiltIns.Length);

        // An admin edits a built-in: a later start must keep the edit.
        var edited = await admin.PutAsJsonAsync("/api/v1/templates/chromium-browser", new
        {
            displayName = "Chromium (edited)",
            defaultResources = new { cpu = "2", memory = "3Gi" },
            stream = new { protocol = "vnc", port = 5900 },
            process = new { command = "chromium --no-sandbox" },
        }, Ct);
        await edited.ShouldBeJsonAsync(HttpStatusCode.OK);
        var afterEdit = await RowsAsync();

        // Two more "replicas" start at once, then one more start.
        var catalog = cp.App.Services.GetRequiredService<TemplateCatalog>();
        await Task.WhenAll(catalog.SeedBuiltInAsync(Ct), catalog.SeedBuiltInAsync(Ct));
        await catalog.SeedBuiltInAsync(Ct);

        var after = await RowsAsync();
        after.ShouldBe(afterEdit);
        var chromium = await (await admin.GetAsync("/api/v1/templates/chromium-browser", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        chromium.GetProperty("displayName").GetString().ShouldBe("Chromium (edited)");
    }

    [Fact]
    public async Task A_second_start_on_the_same_database_leaves_the_catalog_as_it_was()
    {
        var before = await RowsAsync();
        var data = Path.Combine(Path.GetTempPath(), "streamspace-tests", "restart-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(data);
        var second = Hosting.StreamSpaceApp.Build(
        [
            "--urls", "http://127.0.0.1:0",
            $"--StreamSpace:Database={cp.Database.Setting}",
            $"--StreamSpace:DataFolder={data}",
            $"--StreamSpace:AdminPassword={ControlPlaneFixture.AdminPassword}",
            "--Logging:LogLevel:Default=Warning",
        ]);
        try
        {
            await second.StartAsync(Ct);
            (await RowsAsync()).ShouldBe(before);
        }
        finally
        {
            await second.StopAsync(CancellationToken.None);
            await second.DisposeAsync();
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task A_deleted_built_in_does_not_come_back_on_the_next_start()
    {
        var admin = await cp.AdminClientAsync();
        (await admin.DeleteAsync("/api/v1/templates/firefox-browser", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);

        await cp.App.Services.GetRequiredService<TemplateCatalog>().SeedBuiltInAsync(Ct);

        await (await admin.GetAsync("/api/v1/templates/firefox-browser", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        (await RowsAsync()).Select(r => r.Name).ShouldNotContain("firefox-browser");
    }

    private sealed record TemplateRow
    {
        public string Name { get; init; } = "";
        public string Definition { get; init; } = "";
        public bool Builtin { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
    }

    private async Task<List<TemplateRow>> RowsAsync()
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return (await conn.QueryAsync<TemplateRow>(
            "SELECT name AS Name, definition AS Definition, builtin AS Builtin, updated_at AS UpdatedAt FROM templates ORDER BY name")).ToList();
    }
}

public sealed class TemplateCatalogTests_Sqlite(SqliteControlPlane cp) : TemplateCatalogTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class TemplateCatalogTests_Postgres(PostgresControlPlane cp) : TemplateCatalogTests(cp), IClassFixture<PostgresControlPlane>;
