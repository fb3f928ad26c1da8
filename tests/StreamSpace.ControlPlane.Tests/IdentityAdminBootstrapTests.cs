using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// First start without <c>STREAMSPACE_ADMIN_PASSWORD</c> (design §2.6: no default passwords): the real
/// control plane generates one, saves it 0600 in the data folder, and a second start keeps it.
/// </summary>
public abstract class IdentityAdminBootstrapTests(DatabaseKind kind)
{
    private static async Task<(WebApplication App, HttpClient Client)> StartAsync(TestDatabase database, string dataFolder)
    {
        string[] args =
        [
            "--urls", "http://127.0.0.1:0",
            $"--StreamSpace:Database={database.Setting}",
            $"--StreamSpace:DataFolder={dataFolder}",
            "--StreamSpace:EmbeddedAgent=false",
            "--Logging:LogLevel:Default=Warning",
        ];
        var app = StreamSpaceApp.Build(args);
        await app.StartAsync(TestContext.Current.CancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new HttpClient { BaseAddress = new Uri(address) });
    }

    private static async Task StopAsync(WebApplication app, HttpClient client)
    {
        client.Dispose();
        await app.StopAsync(TestContext.Current.CancellationToken);
        await app.DisposeAsync();
    }

    private static Task<HttpResponseMessage> LoginAsync(HttpClient client, string password) =>
        client.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password }, TestContext.Current.CancellationToken);

    [Fact]
    public async Task Generated_admin_password_is_saved_0600_works_and_survives_a_restart()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        var dataFolder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (app, client) = await StartAsync(database, dataFolder);
            var file = Path.Combine(dataFolder, AdminBootstrap.PasswordFileName);
            string password;
            try
            {
                File.Exists(file).ShouldBeTrue();
                if (!OperatingSystem.IsWindows())
                    File.GetUnixFileMode(file).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
                password = (await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken)).Trim();
                password.Length.ShouldBeGreaterThanOrEqualTo(16);
                var ok = await (await LoginAsync(client, password)).ShouldBeJsonAsync(HttpStatusCode.OK);
                ok.GetProperty("user").GetProperty("role").GetString().ShouldBe("admin");
                await (await LoginAsync(client, password + "x")).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
            }
            finally
            {
                await StopAsync(app, client);
            }

            var modified = File.GetLastWriteTimeUtc(file);
            (app, client) = await StartAsync(database, dataFolder);
            try
            {
                (await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken)).Trim().ShouldBe(password);
                File.GetLastWriteTimeUtc(file).ShouldBe(modified);
                (await LoginAsync(client, password)).StatusCode.ShouldBe(HttpStatusCode.OK);
            }
            finally
            {
                await StopAsync(app, client);
            }
        }
        finally
        {
            try { Directory.Delete(dataFolder, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public async Task Configured_admin_password_writes_no_password_file()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        var dataFolder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        SchemaMigrator.MigrateUp(database.Target);
        await using var db = new Db(database.Target);
        var options = new StreamSpaceOptions { DataFolder = dataFolder, AdminPassword = "configured-password" };
        var bootstrap = new AdminBootstrap(db, Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<AdminBootstrap>.Instance);
        await bootstrap.EnsureAdminAsync(TestContext.Current.CancellationToken);
        await bootstrap.EnsureAdminAsync(TestContext.Current.CancellationToken);
        File.Exists(Path.Combine(dataFolder, AdminBootstrap.PasswordFileName)).ShouldBeFalse();
        await using var conn = await db.OpenAsync(TestContext.Current.CancellationToken);
        var hash = await Dapper.SqlMapper.ExecuteScalarAsync<string>(conn, "SELECT password_hash FROM users WHERE username = 'admin'");
        PasswordHasher.Verify("configured-password", hash!).ShouldBeTrue();
    }
}

public sealed class IdentityAdminBootstrapTests_Sqlite() : IdentityAdminBootstrapTests(DatabaseKind.Sqlite);
public sealed class IdentityAdminBootstrapTests_Postgres() : IdentityAdminBootstrapTests(DatabaseKind.Postgres);
