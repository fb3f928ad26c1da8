using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Dapper;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>
/// The real control plane on a real loopback port (Kestrel), against a fresh real database.
/// Derive per database: <see cref="SqliteControlPlane"/> and <see cref="PostgresControlPlane"/>, so
/// every API test class runs on both.
/// </summary>
public abstract class ControlPlaneFixture : IAsyncLifetime
{
    public const string AdminPassword = "admin-test-password-1";

    /// <summary>
    /// Arguments of an in-process control plane (<see cref="StreamSpaceApp.Build"/>) of its own: SQLite in
    /// <paramref name="dataFolder"/>, any free loopback port, logging warnings only (unless not <paramref name="quiet"/>).
    /// </summary>
    public static string[] StandaloneArgs(string dataFolder, bool embeddedAgent, string[] extra, bool quiet = true) =>
    [
        "--urls", "http://127.0.0.1:0",
        $"--StreamSpace:Database=sqlite:{Path.Combine(dataFolder, "streamspace.db")}",
        $"--StreamSpace:DataFolder={dataFolder}",
        $"--StreamSpace:AdminPassword={AdminPassword}",
        $"--StreamSpace:EmbeddedAgent={embeddedAgent}",
        .. quiet ? ["--Logging:LogLevel:Default=Warning"] : Array.Empty<string>(),
        .. extra,
    ];

    private readonly List<HttpClient> _clients = [];
    private readonly List<WebApplication> _replicas = [];
    private string? _adminToken;

    protected ControlPlaneFixture(DatabaseKind kind) => Kind = kind;

    public DatabaseKind Kind { get; }
    public TestDatabase Database { get; private set; } = null!;
    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;
    public string DataFolder { get; private set; } = null!;
    public Db Db => App.Services.GetRequiredService<Db>();

    /// <summary>Extra <c>--StreamSpace:Key=value</c> settings for a derived fixture.</summary>
    protected virtual IEnumerable<string> ExtraArgs => [];

    /// <summary>Hook to replace services (e.g. a FakeTimeProvider) in a derived fixture.</summary>
    protected virtual void ConfigureServices(IServiceCollection services) { }

    public virtual async ValueTask InitializeAsync()
    {
        Database = await TestDatabase.CreateAsync(Kind);
        DataFolder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(DataFolder);
        App = StreamSpaceApp.Build(AppArguments(), ConfigureServices);
        await App.StartAsync();
        var address = App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseAddress = new Uri(address);
    }

    /// <summary>The command line of the app under test (another replica on the same database can start with it too).</summary>
    protected string[] AppArguments() =>
        [
            "--urls", "http://127.0.0.1:0",
            "--environment", "Development",
            $"--StreamSpace:Database={Database.Setting}",
            $"--StreamSpace:DataFolder={DataFolder}",
            $"--StreamSpace:AdminPassword={AdminPassword}",
            "--StreamSpace:EmbeddedAgent=false",
            "--Logging:LogLevel:Default=Warning",
            // Every test logs in from 127.0.0.1; the production limits (30/min per client) would throttle a
            // busy test class. Rate-limit tests set their own small limits through ExtraArgs (later wins).
            "--StreamSpace:LoginAttemptsPerClientPerMinute=100000",
            "--StreamSpace:LoginAttemptsPerUsernamePerMinute=100000",
            .. ExtraArgs,
        ];

    /// <summary>
    /// Starts another replica of the app on the same database and data folder (its command line is
    /// <see cref="AppArguments"/> plus <paramref name="extraArgs"/>, later settings win); stopped with the fixture.
    /// </summary>
    protected async Task<(WebApplication App, Uri Address)> StartReplicaAsync(params string[] extraArgs)
    {
        var replica = StreamSpaceApp.Build([.. AppArguments(), .. extraArgs]);
        _replicas.Add(replica);
        await replica.StartAsync();
        return (replica, new Uri(replica.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()));
    }

    /// <summary>Stops a replica from <see cref="StartReplicaAsync"/> before the fixture ends.</summary>
    protected async Task StopReplicaAsync(WebApplication replica)
    {
        if (!_replicas.Remove(replica)) return;
        await replica.StopAsync();
        await replica.DisposeAsync();
    }

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var c in _clients) c.Dispose();
        foreach (var replica in _replicas)
        {
            await replica.StopAsync();
            await replica.DisposeAsync();
        }
        if (App is not null)
        {
            await App.StopAsync();
            await App.DisposeAsync();
        }
        if (Database is not null) await Database.DisposeAsync();
        try { Directory.Delete(DataFolder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        GC.SuppressFinalize(this);
    }

    /// <summary>A client for the API; with a token, it sends it as a bearer token.</summary>
    public HttpClient Client(string? token = null)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (token is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        _clients.Add(client);
        return client;
    }

    public async Task<string> LoginAsync(string username, string password)
    {
        using var response = await Client().PostAsJsonAsync("/api/v1/auth/login", new { username, password });
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<LoginResponse>();
        return body!.Token;
    }

    public async Task<string> AdminTokenAsync() => _adminToken ??= await LoginAsync("admin", AdminPassword);

    public Task<HttpClient> AdminClientAsync() => AdminTokenAsync().ContinueWith(t => Client(t.Result), TaskScheduler.Default);

    /// <summary>
    /// Creates a user directly in the database (test setup, independent of the users API) and returns
    /// a signed-in client. Usernames must be unique within a fixture.
    /// </summary>
    public async Task<(HttpClient Client, string UserId, string Token)> CreateUserAsync(string username, string role = Roles.User, int maxSessions = 5, string password = "user-password-1")
    {
        var id = Guid.NewGuid().ToString("N");
        var now = DateTimeOffset.UtcNow;
        await using (var conn = await Db.OpenAsync(CancellationToken.None))
        {
            await conn.ExecuteAsync(
                """
                INSERT INTO users (id, username, password_hash, role, disabled, max_sessions, token_version, created_at, updated_at)
                VALUES (@id, @username, @hash, @role, @disabled, @maxSessions, 1, @now, @now)
                """,
                new { id, username, hash = PasswordHasher.Hash(password), role, disabled = false, maxSessions, now });
        }
        var token = await LoginAsync(username, password);
        return (Client(token), id, token);
    }

    /// <summary>Unique name helper so tests sharing a fixture never collide.</summary>
    public static string Unique(string prefix) => $"{prefix}{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>Registers an agent through the admin API, as an operator does, and returns its id and one-time token.</summary>
    public async Task<(string AgentId, string Token)> RegisterAgentAsync(string prefix)
    {
        var agentId = Unique(prefix);
        var admin = await AdminClientAsync();
        var created = await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.Created);
        return (agentId, created.GetProperty("token").GetString()!);
    }
}

public sealed class SqliteControlPlane() : ControlPlaneFixture(DatabaseKind.Sqlite);

public sealed class PostgresControlPlane() : ControlPlaneFixture(DatabaseKind.Postgres);
