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
    private static async Task<(WebApplication App, HttpClient Client)> StartAsync(TestDatabase database, string dataFolder, params string[] extra)
    {
        string[] args =
        [
            "--urls", "http://127.0.0.1:0",
            $"--StreamSpace:Database={database.Setting}",
            $"--StreamSpace:DataFolder={dataFolder}",
            "--StreamSpace:EmbeddedAgent=false",
            "--Logging:LogLevel:Default=Warning",
            .. extra,
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

    private static Task<HttpResponseMessage> LoginAsync(HttpClient client, string password, string username = "admin") =>
        client.PostAsJsonAsync("/api/v1/auth/login", new { username, password }, TestContext.Current.CancellationToken);

    private static HttpRequestMessage Authorized(HttpMethod method, string path, string token, object? body = null)
    {
        var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    [Fact]
    public async Task A_deleted_admin_stays_deleted_across_restarts_and_its_creation_was_audited()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var database = await TestDatabase.CreateAsync(kind);
        var dataFolder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        const string adminPassword = "configured-password-1";
        string[] settings = [$"--StreamSpace:AdminPassword={adminPassword}"];
        try
        {
            var (app, client) = await StartAsync(database, dataFolder, settings);
            try
            {
                var login = await (await LoginAsync(client, adminPassword)).ShouldBeJsonAsync(HttpStatusCode.OK);
                var adminToken = login.GetProperty("token").GetString()!;
                var adminId = login.GetProperty("user").GetProperty("id").GetString()!;
                var audit = await (await client.SendAsync(Authorized(HttpMethod.Get, "/api/v1/audit?action=user.created", adminToken), ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
                var created = audit.EnumerateArray().ShouldHaveSingleItem();
                created.GetProperty("actor").GetString().ShouldBe(AdminBootstrap.SystemActor);
                created.GetProperty("target").GetString().ShouldBe("admin");

                // The operator makes an admin of their own and deletes the built-in one.
                (await client.SendAsync(Authorized(HttpMethod.Post, "/api/v1/users", adminToken,
                    new { username = "operator", password = "operator-password", role = "admin" }), ct)).StatusCode.ShouldBe(HttpStatusCode.Created);
                var operatorToken = (await (await LoginAsync(client, "operator-password", "operator")).ShouldBeJsonAsync(HttpStatusCode.OK))
                    .GetProperty("token").GetString()!;
                (await client.SendAsync(Authorized(HttpMethod.Delete, $"/api/v1/users/{adminId}", operatorToken), ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
            }
            finally
            {
                await StopAsync(app, client);
            }

            // Restarted with the same settings, the old password opens nothing.
            (app, client) = await StartAsync(database, dataFolder, settings);
            try
            {
                await (await LoginAsync(client, adminPassword)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
                (await LoginAsync(client, "operator-password", "operator")).StatusCode.ShouldBe(HttpStatusCode.OK);
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

    /// <summary>The bootstrap on its own, without a host: real database, real audit log, system time.</summary>
    private static AdminBootstrap NewBootstrap(Db db, StreamSpaceOptions options) =>
        new(db, Microsoft.Extensions.Options.Options.Create(options), new Audit.AuditLog(db, TimeProvider.System),
            TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<AdminBootstrap>.Instance);

    [Fact]
    public async Task A_database_from_before_the_marker_that_has_users_gets_no_new_admin()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);
        await using var db = new Db(database.Target);
        await using (var conn = await db.OpenAsync(ct))
        {
            // An older control plane made admin, the operator their own admin, then deleted admin.
            await Dapper.SqlMapper.ExecuteAsync(conn,
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES ('op', 'operator', @hash, 'admin', @no, 5, 1, @now, @now)
                """, new { hash = PasswordHasher.Hash("operator-password"), no = false, now = DateTimeOffset.UtcNow });
        }
        var options = new StreamSpaceOptions { DataFolder = Path.GetTempPath(), AdminPassword = "configured-password" };
        var bootstrap = NewBootstrap(db, options);
        await bootstrap.EnsureAdminAsync(ct);
        await using var check = await db.OpenAsync(ct);
        (await Dapper.SqlMapper.ExecuteScalarAsync<long>(check, "SELECT COUNT(*) FROM users WHERE username = 'admin'")).ShouldBe(0);
        (await Dapper.SqlMapper.ExecuteScalarAsync<long>(check, "SELECT COUNT(*) FROM settings WHERE key = 'admin_bootstrapped'")).ShouldBe(1);
    }

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
    public async Task A_generated_password_that_cannot_be_saved_makes_no_admin_and_a_later_start_makes_one()
    {
        // The account used to be committed first: a password that then could not be saved belonged to an admin nobody
        // could sign in as, and the marker stopped every later start from making another.
        var ct = TestContext.Current.CancellationToken;
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);
        await using var db = new Db(database.Target);
        AdminBootstrap Bootstrap(string dataFolder) => NewBootstrap(db, new StreamSpaceOptions { DataFolder = dataFolder });

        // A folder below a file cannot be made, whoever runs the test (root included).
        var message = (await Should.ThrowAsync<StreamSpaceConfigurationException>(() => Bootstrap("/etc/passwd/streamspace").EnsureAdminAsync(ct))).Message;
        message.ShouldStartWith("cannot save the generated admin password in /etc/passwd/streamspace (");
        message.ShouldEndWith("): make STREAMSPACE_DATA a folder this account can write, or set STREAMSPACE_ADMIN_PASSWORD");
        await using (var conn = await db.OpenAsync(ct))
        {
            (await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn, "SELECT COUNT(*) FROM users")).ShouldBe(0);
            (await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn, "SELECT COUNT(*) FROM settings WHERE key = 'admin_bootstrapped'")).ShouldBe(0);
        }

        var dataFolder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        try
        {
            // Two replicas starting at once: one makes the admin, neither leaves its pending file behind.
            await Task.WhenAll(Bootstrap(dataFolder).EnsureAdminAsync(ct), Bootstrap(dataFolder).EnsureAdminAsync(ct));
            Directory.GetFiles(dataFolder).Select(Path.GetFileName).ShouldBe([AdminBootstrap.PasswordFileName]);
            var file = Path.Combine(dataFolder, AdminBootstrap.PasswordFileName);
            if (!OperatingSystem.IsWindows()) File.GetUnixFileMode(file).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var password = (await File.ReadAllTextAsync(file, ct)).TrimEnd('\n');
            await using var conn = await db.OpenAsync(ct);
            var hash = await Dapper.SqlMapper.ExecuteScalarAsync<string>(conn, "SELECT password_hash FROM users WHERE username = 'admin'");
            PasswordHasher.Verify(password, hash!).ShouldBeTrue();
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
        var bootstrap = NewBootstrap(db, options);
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
