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

    [Fact]
    public async Task An_upgrade_brings_an_untouched_built_in_up_to_date_and_keeps_one_an_admin_edited()
    {
        var admin = await cp.AdminClientAsync();
        var catalog = cp.App.Services.GetRequiredService<TemplateCatalog>();
        var folder = Directory.CreateTempSubdirectory("streamspace-builtins-").FullName;
        string untouched = ControlPlaneFixture.Unique("shipped-a-"), edited = ControlPlaneFixture.Unique("shipped-b-");
        void Ship(string name, string description) => File.WriteAllText(Path.Combine(folder, name + ".yaml"), $$"""
            name: {{name}}
            displayName: Shipped
            description: {{description}}
            defaultResources: {cpu: 250m, memory: 256Mi}
            stream: {protocol: vnc, port: 5900}
            process: {command: xterm}
            """);
        async Task<string?> DescriptionAsync(string name) =>
            (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetProperty("description").GetString();
        try
        {
            Ship(untouched, "version 1");
            Ship(edited, "version 1");
            await catalog.SeedBuiltInAsync(folder, Ct);
            (await DescriptionAsync(untouched)).ShouldBe("version 1");
            await (await admin.PutAsJsonAsync($"/api/v1/templates/{edited}", new
            {
                displayName = "Mine", description = "mine", defaultResources = new { cpu = "1", memory = "1Gi" },
                stream = new { protocol = "vnc", port = 5900 }, process = new { command = "xterm" },
            }, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

            // The next release ships version 2 of both; one more start with the same files changes nothing more.
            Ship(untouched, "version 2");
            Ship(edited, "version 2");
            await catalog.SeedBuiltInAsync(folder, Ct);
            (await DescriptionAsync(untouched)).ShouldBe("version 2");
            (await DescriptionAsync(edited)).ShouldBe("mine");
            var settled = await RowsAsync();
            await catalog.SeedBuiltInAsync(folder, Ct);
            (await RowsAsync()).ShouldBe(settled);

            // Built-ins seeded before the marks held fingerprints ("true"): untouched while never updated, else edited.
            await using (var conn = await cp.Db.OpenAsync(Ct))
            {
                await conn.ExecuteAsync("UPDATE settings SET value = 'true' WHERE key IN (@a, @b)", new { a = "template.seeded:" + untouched, b = "template.seeded:" + edited });
                await conn.ExecuteAsync("UPDATE templates SET created_at = updated_at WHERE name = @untouched", new { untouched });
            }
            Ship(untouched, "version 3");
            Ship(edited, "version 3");
            await catalog.SeedBuiltInAsync(folder, Ct);
            (await DescriptionAsync(untouched)).ShouldBe("version 3");
            (await DescriptionAsync(edited)).ShouldBe("mine");
        }
        finally
        {
            await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            {
                await conn.ExecuteAsync("DELETE FROM templates WHERE name IN (@untouched, @edited)", new { untouched, edited });
                await conn.ExecuteAsync("DELETE FROM settings WHERE key IN (@a, @b)", new { a = "template.seeded:" + untouched, b = "template.seeded:" + edited });
            }
            Directory.Delete(folder, recursive: true);
        }
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
