using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The embedded agent (./run.sh's) with its real process runtime: it reads the agent settings a standalone agent reads,
/// and as root a data folder the session accounts cannot enter (a checkout under /root, mode 700) no longer keeps every
/// session from starting. Real control plane, real SQLite, real Xvnc and xterm; needs root, as the process runtime's
/// account tests do.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EmbeddedAgentSettingsTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly string _root = Directory.CreateTempSubdirectory("streamspace-embedded-settings-").FullName;

    // Temporary folders are made 0700; this one stands for / and must let the session accounts through.
    public EmbeddedAgentSettingsTests() => File.SetUnixFileMode(_root, (UnixFileMode)Convert.ToInt32("755", 8));

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static async Task<(WebApplication App, HttpClient Admin)> StartAsync(string data, params string[] extra)
    {
        var app = StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, extra));
        await app.StartAsync(TestContext.Current.CancellationToken);
        var admin = new HttpClient { BaseAddress = new Uri(app.Urls.First()), Timeout = Wait };
        using var login = await admin.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password = ControlPlaneFixture.AdminPassword },
            TestContext.Current.CancellationToken);
        login.EnsureSuccessStatusCode();
        var token = (await login.Content.ReadFromJsonAsync<JsonElement>(TestContext.Current.CancellationToken)).GetProperty("token").GetString();
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return (app, admin);
    }

    /// <summary>The embedded agent "local" as GET /api/v1/agents shows it once it said hello.</summary>
    private static async Task<JsonElement> OnlineLocalAgentAsync(HttpClient admin)
    {
        var until = DateTime.UtcNow + Wait;
        while (true)
        {
            var agents = await admin.GetFromJsonAsync<JsonElement>("/api/v1/agents", TestContext.Current.CancellationToken);
            var local = agents.EnumerateArray().FirstOrDefault(a => a.GetProperty("agentId").GetString() == "local");
            if (local.ValueKind == JsonValueKind.Object && local.GetProperty("status").GetString() == "online") return local;
            if (DateTime.UtcNow > until) throw new TimeoutException($"the embedded agent did not come online: {agents}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>The session once its state is none of <paramref name="passing"/> (the states it moves through).</summary>
    private static async Task<JsonElement> SessionPastAsync(HttpClient admin, string id, params string[] passing)
    {
        var until = DateTime.UtcNow + Wait;
        while (true)
        {
            var session = await admin.GetFromJsonAsync<JsonElement>($"/api/v1/sessions/{id}", TestContext.Current.CancellationToken);
            if (!passing.Contains(session.GetProperty("state").GetString())) return session;
            if (DateTime.UtcNow > until) throw new TimeoutException($"session {id} still {session.GetProperty("state")}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>
    /// Creates an xterm session on the embedded agent, waits until it runs, hands its id to <paramref name="whileRunning"/>,
    /// then deletes it and waits until it is terminated.
    /// </summary>
    private static async Task WithRunningXtermAsync(HttpClient admin, Action<string> whileRunning)
    {
        using var created = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" }, TestContext.Current.CancellationToken);
        created.StatusCode.ShouldBe(System.Net.HttpStatusCode.Created, await created.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(TestContext.Current.CancellationToken)).GetProperty("id").GetString()!;
        var session = await SessionPastAsync(admin, id, "pending", "starting");
        session.GetProperty("state").GetString().ShouldBe("running", session.ToString());
        whileRunning(id);
        using var deleted = await admin.DeleteAsync($"/api/v1/sessions/{id}", TestContext.Current.CancellationToken);
        deleted.IsSuccessStatusCode.ShouldBeTrue();
        (await SessionPastAsync(admin, id, "running", "terminating")).GetProperty("state").GetString().ShouldBe("terminated");
    }

    [Fact]
    public async Task As_root_sessions_start_when_the_data_folder_is_in_a_folder_the_session_accounts_cannot_enter()
    {
        Environment.IsPrivilegedProcess.ShouldBeTrue("this test is about sessions running as their own accounts under a root agent");
        // A checkout under /root: the folder above the data folder is 0700, the data folder itself 0755 (umask 022).
        var home = Directory.CreateDirectory(Path.Combine(_root, "root-home")).FullName;
        File.SetUnixFileMode(home, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var data = Directory.CreateDirectory(Path.Combine(home, "streamspace", "data")).FullName;
        File.SetUnixFileMode(data, (UnixFileMode)Convert.ToInt32("755", 8));
        var shared = Directory.CreateDirectory(Path.Combine(_root, "var-lib-streamspace")).FullName;

        var (app, admin) = await StartAsync(data, $"--StreamSpace:Agent:SharedStateRoot={shared}");
        await using (app)
        using (admin)
        {
            await OnlineLocalAgentAsync(admin);
            await WithRunningXtermAsync(admin, id =>
            {
                var state = Directory.EnumerateDirectories(shared).ShouldHaveSingleItem();
                Directory.Exists(Path.Combine(state, "sessions", id)).ShouldBeTrue();
                Directory.Exists(Path.Combine(data, "agent-local")).ShouldBeFalse("the state went to the data folder after all");
            });
            await app.StopAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task The_embedded_agent_reads_the_state_folder_and_session_settings_a_standalone_agent_reads()
    {
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        var state = Path.Combine(_root, "agent-state");
        var (app, admin) = await StartAsync(data, $"--STREAMSPACE_AGENT_STATE={state}", "--STREAMSPACE_SESSION_LIMITS=false");
        await using (app)
        using (admin)
        {
            var local = await OnlineLocalAgentAsync(admin);
            local.GetProperty("sessionLimits").GetString().ShouldBe("not enforced: turned off (STREAMSPACE_SESSION_LIMITS=false)");
            Directory.Exists(Path.Combine(state, "sessions")).ShouldBeTrue();
            Directory.Exists(Path.Combine(data, "agent-local")).ShouldBeFalse();
            await app.StopAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task The_embedded_agent_runs_sessions_with_the_agent_sections_settings()
    {
        // StreamSpace:Agent:Geometry (and the rest of the section) used to apply to standalone agents only: the embedded
        // one took the session account and limit settings and ignored the others without a word.
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        var (app, admin) = await StartAsync(data, "--StreamSpace:Agent:Geometry=1024x640");
        await using (app)
        using (admin)
        {
            await OnlineLocalAgentAsync(admin);
            await WithRunningXtermAsync(admin, _ =>
            {
                // The session's Xvnc (its socket is in the state folder under the data folder): its command line says the size.
                var xvnc = Directory.EnumerateDirectories("/proc")
                    .Select(p => { try { return File.ReadAllText(Path.Combine(p, "cmdline")).Split('\0'); } catch (IOException) { return []; } })
                    .Where(args => args.Length > 0 && Path.GetFileName(args[0]) == "Xvnc" && args.Any(a => a.Contains(data, StringComparison.Ordinal)))
                    .ToList();
                xvnc.ShouldHaveSingleItem($"one Xvnc under {data}").ShouldContain("1024x640");
            });
            await app.StopAsync(TestContext.Current.CancellationToken);
        }
    }

    [Theory]
    [InlineData("--StreamSpace:Agent:Geometry=huge", "invalid agent configuration: Geometry must look like 1280x800")]
    [InlineData("--StreamSpace:Agent:SessionLogMaxBytes=10", "invalid agent configuration: SessionLogMaxBytes (StreamSpace__Agent__SessionLogMaxBytes) must be at least 65536")]
    [InlineData("--STREAMSPACE_SESSION_MAX_PROCESSES=5", "invalid agent configuration: SessionMaxProcesses (STREAMSPACE_SESSION_MAX_PROCESSES) must be between 16 and 4194304")]
    public void An_agent_setting_the_embedded_agent_cannot_start_with_is_refused_when_the_control_plane_is_built(string setting, string message)
    {
        // Not once the control plane listens and made its database, as the embedded agent's own start would find it.
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        Should.Throw<StreamSpace.Agent.Hosting.AgentOptionsException>(
            () => StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, [setting]))).Message.ShouldBe(message);
        File.Exists(Path.Combine(data, "streamspace.db")).ShouldBeFalse();
    }

    [Fact]
    public async Task The_embedded_agents_capacity_follows_the_setting_on_every_start()
    {
        // The agent enforces StreamSpace__EmbeddedAgentMaxSessions; the row must say the same, or placement and the agent
        // disagree about how many sessions fit (sessions fail at the agent instead of a 503, or room goes unused).
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        foreach (var max in new[] { 3, 5, 2 })
        {
            var (app, admin) = await StartAsync(data, $"--StreamSpace:EmbeddedAgentMaxSessions={max}");
            await using (app)
            using (admin)
            {
                var local = await OnlineLocalAgentAsync(admin);
                local.GetProperty("maxSessions").GetInt32().ShouldBe(max);
                local.GetProperty("reportedCapacity").GetInt32().ShouldBe(max);
                local.GetProperty("capacity").GetInt32().ShouldBe(max);
                local.GetProperty("region").GetString().ShouldBe("local");
                await app.StopAsync(TestContext.Current.CancellationToken);
            }
        }
    }

    [Fact]
    public async Task A_changed_embedded_agent_id_is_refused_at_start_since_the_state_folder_holds_the_old_ids_sessions()
    {
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        var (app, admin) = await StartAsync(data);
        await using (app)
        using (admin)
        {
            await OnlineLocalAgentAsync(admin);
            await app.StopAsync(TestContext.Current.CancellationToken);
        }

        // Its sessions in <data>/agent-local are placed on 'local': under another id its hello would have them stopped.
        // Refused while the control plane is built, before it listens or starts anything.
        var refused = Should.Throw<StreamSpace.Agent.Hosting.AgentOptionsException>(
            () => StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, ["--StreamSpace:EmbeddedAgentId=renamed"])));
        refused.Message.ShouldStartWith($"the agent state folder {Path.Combine(data, "agent-local")} belongs to agent 'local', not 'renamed': ");
        await using var db = new StreamSpace.ControlPlane.Data.Db(StreamSpace.ControlPlane.Data.DatabaseTarget.Parse(null, data));
        await using var conn = await db.OpenAsync(TestContext.Current.CancellationToken);
        (await Dapper.SqlMapper.ExecuteScalarAsync<long>(conn, "SELECT COUNT(*) FROM agents WHERE agent_id = 'renamed'")).ShouldBe(0, "refused before it registered");
    }

    [Theory]
    [InlineData("connect")]
    [InlineData("streams")]
    public void An_embedded_agent_id_that_names_a_literal_agents_route_is_refused_at_start_saying_why(string agentId)
    {
        // As an API registration would be: /api/v1/agents/connect and /api/v1/agents/streams/{id} are routes of their own.
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        var refused = Should.Throw<StreamSpaceConfigurationException>(
            () => StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, [$"--StreamSpace:EmbeddedAgentId={agentId}"])));
        refused.Message.ShouldContain(
            $"StreamSpace__EmbeddedAgentId: '{agentId}' is reserved: /api/v1/agents/{agentId} is a route of its own, so the agent could not be read or managed");
        Directory.Exists(Path.Combine(data, $"agent-{agentId}")).ShouldBeFalse("refused before it took a state folder");
    }

    [Fact]
    public async Task A_control_plane_built_on_a_data_folder_whose_agent_state_is_in_use_is_refused_and_the_folder_is_free_once_the_first_is_disposed()
    {
        var data = Directory.CreateDirectory(Path.Combine(_root, "data")).FullName;
        var first = StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, []));
        await using (first)
        {
            // Held from the build on, before anything listens: the second one ends there, as a second ./run.sh does.
            var refused = Should.Throw<StreamSpace.Agent.Hosting.AgentOptionsException>(
                () => StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: true, [])));
            refused.Message.ShouldBe($"the agent state folder {Path.Combine(data, "agent-local")} is in use by another agent (pid {Environment.ProcessId}): " +
                "one state folder serves one agent process (STREAMSPACE_AGENT_STATE)");
        }

        // The first was never started: disposing it released the folder all the same.
        var (app, admin) = await StartAsync(data);
        await using (app)
        using (admin)
        {
            await OnlineLocalAgentAsync(admin);
            await app.StopAsync(TestContext.Current.CancellationToken);
        }
    }
}
