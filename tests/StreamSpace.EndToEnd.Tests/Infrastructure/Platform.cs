using System.Data.Common;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A whole StreamSpace installation made of real processes: one control-plane process on a free
/// loopback port against a fresh real database, and any number of agent processes. Each can be
/// killed (SIGKILL) and restarted on the same data, as an operator or a crash would.
/// </summary>
public sealed class Platform : IAsyncDisposable
{
    public const string AdminPassword = "e2e-admin-password";
    private readonly List<AgentHandle> _agents = [];
    private readonly List<ControlPlaneReplica> _replicas = [];
    private readonly Dictionary<string, string?> _extraEnv;
    private HttpClient? _admin;

    private Platform(TestDatabase database, int port, string dataFolder, Dictionary<string, string?> extraEnv)
    {
        Database = database;
        Port = port;
        DataFolder = dataFolder;
        _extraEnv = extraEnv;
        Db = new Db(database.Target);
    }

    public TestDatabase Database { get; }
    public Db Db { get; }
    public int Port { get; }
    public string DataFolder { get; }
    public Uri BaseAddress => new($"http://127.0.0.1:{Port}");
    public ManagedProcess? ControlPlane { get; private set; }
    public IReadOnlyList<AgentHandle> Agents => _agents;

    /// <param name="extraListenAddress">Another local address to listen on too (e.g. the host side of a test network namespace).</param>
    public static async Task<Platform> StartAsync(DatabaseKind kind, int heartbeatSeconds = 1, Dictionary<string, string?>? env = null, string? extraListenAddress = null)
    {
        var db = await TestDatabase.CreateAsync(kind);
        var env2 = env ?? [];
        env2.TryAdd("STREAMSPACE_HEARTBEAT_SECONDS", heartbeatSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var port = FreePort.Next();
        if (extraListenAddress is not null)
            env2["STREAMSPACE_URLS"] = $"http://127.0.0.1:{port};http://{extraListenAddress}:{port}";
        var platform = new Platform(db, port, Paths.NewTempFolder("e2e-cp"), env2);
        await platform.StartControlPlaneAsync();
        return platform;
    }

    /// <summary>
    /// Starts the control plane (again, after a kill); <paramref name="env"/> adds to or replaces the installation's
    /// environment for this start only (another HOME, as a new container has).
    /// </summary>
    public async Task StartControlPlaneAsync(IReadOnlyDictionary<string, string?>? env = null)
    {
        ControlPlane = await StartControlPlaneProcessAsync("control-plane", BaseAddress, DataFolder, env);
        _admin = null;
    }

    /// <summary>
    /// Another control-plane process on this installation's database, as a second replica (another pod, another host) runs
    /// it: its own port and data folder, the installation's environment plus <paramref name="env"/>. Killed with the platform.
    /// </summary>
    public async Task<ControlPlaneReplica> StartReplicaAsync(IReadOnlyDictionary<string, string?>? env = null)
    {
        var baseAddress = new Uri($"http://127.0.0.1:{FreePort.Next()}");
        var dataFolder = Paths.NewTempFolder("e2e-cp");
        try
        {
            var replica = new ControlPlaneReplica(await StartControlPlaneProcessAsync("control-plane-replica", baseAddress, dataFolder, env), baseAddress, dataFolder);
            _replicas.Add(replica);
            return replica;
        }
        catch
        {
            Directory.Delete(dataFolder, true);
            throw;
        }
    }

    private async Task<ManagedProcess> StartControlPlaneProcessAsync(string name, Uri baseAddress, string dataFolder, IReadOnlyDictionary<string, string?>? startEnv)
    {
        var env = new Dictionary<string, string?>
        {
            ["STREAMSPACE_URLS"] = baseAddress.ToString().TrimEnd('/'),
            ["STREAMSPACE_DATABASE"] = Database.Setting,
            ["STREAMSPACE_DATA"] = dataFolder,
            ["STREAMSPACE_ADMIN_PASSWORD"] = AdminPassword,
            ["STREAMSPACE_EMBEDDED_AGENT"] = "false",
        };
        foreach (var (k, v) in _extraEnv) env[k] = v;
        foreach (var (k, v) in startEnv ?? new Dictionary<string, string?>()) env[k] = v;
        var process = ManagedProcess.Start(name, Paths.ControlPlaneExe, env);
        try
        {
            await WaitUntilAsync(async () =>
            {
                if (process.HasExited) throw new InvalidOperationException($"{name} exited:\n" + process.Output);
                try
                {
                    using var probe = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(2) };
                    return (await probe.GetAsync("/readyz")).IsSuccessStatusCode;
                }
                catch (HttpRequestException) { return false; }
                catch (TaskCanceledException) { return false; }
            }, TimeSpan.FromSeconds(60), $"{name} ready");
            return process;
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    public async Task<HttpClient> AdminAsync() => _admin ??= await ClientForAsync("admin", AdminPassword);

    public async Task<HttpClient> ClientForAsync(string username, string password)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        using var response = await client.PostAsJsonAsync("/api/v1/auth/login", new { username, password });
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"login as {username} failed: {(int)response.StatusCode} {text}");
        var token = JsonDocument.Parse(text).RootElement.GetProperty("token").GetString();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>Registers an agent through the admin API and starts its process.</summary>
    /// <param name="networkNamespace">Run the agent inside this namespace, dialing the control plane across its link.</param>
    /// <param name="start">Start the process now; false leaves it to the caller (to time the start itself).</param>
    public async Task<AgentHandle> AddAgentAsync(string agentId, string runtime = "process", int maxSessions = 10, NetworkNamespace? networkNamespace = null, bool start = true)
    {
        var admin = await AdminAsync();
        using var response = await admin.PostAsJsonAsync("/api/v1/agents", new { agentId, platform = runtime, maxSessions });
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"creating agent {agentId} failed: {(int)response.StatusCode} {text}");
        var token = JsonDocument.Parse(text).RootElement.GetProperty("token").GetString()!;
        var handle = new AgentHandle(this, agentId, token, runtime, maxSessions, Paths.NewTempFolder("e2e-agent"), networkNamespace);
        _agents.Add(handle);
        if (start) handle.Start();
        return handle;
    }

    public async Task<string?> AgentStatusInDbAsync(string agentId)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return await Dapper.SqlMapper.QuerySingleOrDefaultAsync<string?>(conn, "SELECT status FROM agents WHERE agent_id = @agentId", new { agentId });
    }

    public async Task<T> QueryScalarAsync<T>(string sql, object? args = null)
    {
        await using var conn = await Db.OpenAsync(CancellationToken.None);
        return await Dapper.SqlMapper.ExecuteScalarAsync<T>(conn, sql, args) ?? throw new InvalidOperationException("no value for " + sql);
    }

    public async Task<DbConnection> OpenDbAsync() => await Db.OpenAsync(CancellationToken.None);

    public static async Task<TimeSpan> WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, int pollMs = 50)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        while (started.Elapsed < timeout)
        {
            if (await condition()) return started.Elapsed;
            await Task.Delay(pollMs);
        }
        throw new TimeoutException($"timed out after {timeout.TotalSeconds:0.#} s waiting for: {what}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var a in _agents) await a.DisposeAsync();
        foreach (var r in _replicas) await r.DisposeAsync();
        if (ControlPlane is not null) await ControlPlane.DisposeAsync();
        _admin?.Dispose();
        await Db.DisposeAsync();
        await Database.DisposeAsync();
        try { Directory.Delete(DataFolder, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A second control-plane process of a <see cref="Platform"/> (<see cref="Platform.StartReplicaAsync"/>).</summary>
public sealed class ControlPlaneReplica(ManagedProcess process, Uri baseAddress, string dataFolder) : IAsyncDisposable
{
    public ManagedProcess Process => process;
    public Uri BaseAddress => baseAddress;

    public async ValueTask DisposeAsync()
    {
        await process.DisposeAsync();
        try { Directory.Delete(dataFolder, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>An agent process and its persistent state folder (kept across restarts, like a real host).</summary>
public sealed class AgentHandle(Platform platform, string agentId, string token, string runtime, int maxSessions, string stateFolder, NetworkNamespace? networkNamespace = null) : IAsyncDisposable
{
    public string AgentId => agentId;
    public string StateFolder => stateFolder;
    public ManagedProcess? Process { get; private set; }

    public void Start()
    {
        var controlPlane = networkNamespace is null
            ? platform.BaseAddress.ToString().TrimEnd('/')
            : $"http://{networkNamespace.HostAddress}:{platform.Port}";
        var env = new Dictionary<string, string?>
        {
            ["STREAMSPACE_CONTROL_PLANE"] = controlPlane,
            ["STREAMSPACE_AGENT_ID"] = agentId,
            ["STREAMSPACE_AGENT_TOKEN"] = token,
            ["STREAMSPACE_AGENT_STATE"] = stateFolder,
            ["STREAMSPACE_RUNTIME"] = runtime,
            ["STREAMSPACE_MAX_SESSIONS"] = maxSessions.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        Process = networkNamespace is null
            ? ManagedProcess.Start($"agent-{agentId}", Paths.AgentExe, env)
            : ManagedProcess.Start($"agent-{agentId}", "/usr/bin/ip", env, ["netns", "exec", networkNamespace.Name, Paths.AgentExe]);
    }

    public async Task KillAsync()
    {
        if (Process is not null) await Process.KillAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (Process is not null)
        {
            await Process.StopAsync(TimeSpan.FromSeconds(5));
            await Process.DisposeAsync();
        }
        // Sessions outlive their agent by design; a test's sessions must not outlive the test.
        KillSessionProcesses(stateFolder);
        try { Directory.Delete(stateFolder, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Kills every process running in the state folder (session homes live there) or naming it.</summary>
    public static void KillSessionProcesses(string folder)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                var cwd = new DirectoryInfo(Path.Combine(dir, "cwd")).LinkTarget ?? "";
                if (cmdline.Contains(folder, StringComparison.Ordinal) || cwd.StartsWith(folder, StringComparison.Ordinal))
                    _ = Posix.Kill(pid, Posix.SIGKILL);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
