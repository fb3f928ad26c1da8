using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// A deleted user's persistent home, with real processes: the control plane queues <c>home.delete</c> to the agent where
/// the user's session had it, and the agent removes the folder with the user's files, also when that agent was away
/// and still ran a session of the user's with it.
/// </summary>
public sealed class UserHomeDeletionTests
{
    [Fact]
    public async Task Deleting_a_user_removes_their_persistent_home_from_the_agent()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2);
        var (admin, agent, userId, id, home) = await RunSessionWithHomeAsync(platform, "agent-homes", "leaver");

        using (var terminate = await admin.DeleteAsync($"/api/v1/sessions/{id}"))
            terminate.StatusCode.ShouldBe(HttpStatusCode.Accepted);
        await admin.WaitForSessionStateAsync(id, "terminated", TimeSpan.FromSeconds(30));
        Directory.Exists(home).ShouldBeTrue("a persistent home outlives its session");

        using (var delete = await admin.DeleteAsync($"/api/v1/users/{userId}"))
            delete.StatusCode.ShouldBe(HttpStatusCode.NoContent, await delete.Content.ReadAsStringAsync());
        await Platform.WaitUntilAsync(() => Task.FromResult(!Directory.Exists(home)), TimeSpan.FromSeconds(20), "the deleted user's home removed");
        await Platform.WaitUntilAsync(async () => await platform.QueryScalarAsync<string>(
                "SELECT state FROM agent_commands WHERE type = 'home.delete' AND agent_id = 'agent-homes'") == "succeeded",
            TimeSpan.FromSeconds(10), "the home.delete command succeeded");
    }

    /// <summary>
    /// The case the agent once refused for good: the user's session was terminated while its agent was down, its stop
    /// expired (the control plane ended it without the agent's word), and the user was deleted. When the agent is back,
    /// reconciliation stops the orphan and the <c>home.delete</c>, which may reach the agent first, deletes the home once
    /// the session is gone.
    /// </summary>
    [Fact]
    public async Task A_user_deleted_while_their_session_still_ran_on_an_away_agent_has_it_stopped_and_their_home_removed_when_it_returns()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2,
            env: new Dictionary<string, string?> { ["StreamSpace__CommandTtl"] = "00:00:05" });
        var (admin, agent, userId, id, home) = await RunSessionWithHomeAsync(platform, "agent-away", "stayer");
        var record = Path.Combine(agent.StateFolder, "sessions", id, "session.json");
        File.Exists(record).ShouldBeTrue("the agent's record of the running session");

        await agent.KillAsync();
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-away") == "offline", TimeSpan.FromSeconds(10), "agent offline");
        using (var terminate = await admin.DeleteAsync($"/api/v1/sessions/{id}"))
            terminate.StatusCode.ShouldBe(HttpStatusCode.Accepted);
        await admin.WaitForSessionStateAsync(id, "terminated", TimeSpan.FromSeconds(60)); // its stop expired
        using (var delete = await admin.DeleteAsync($"/api/v1/users/{userId}"))
            delete.StatusCode.ShouldBe(HttpStatusCode.NoContent, await delete.Content.ReadAsStringAsync());
        (await platform.QueryScalarAsync<string>("SELECT detail FROM audit_log WHERE action = 'user.deleted' AND target = 'stayer'"))
            .ShouldStartWith("1 persistent-home session(s) an agent had not confirmed stopping");
        File.Exists(Path.Combine(home, "notes.txt")).ShouldBeTrue("the session still runs on the host, with its home");

        agent.Start();
        await Platform.WaitUntilAsync(() => Task.FromResult(!File.Exists(record)), TimeSpan.FromSeconds(30), "the orphan session stopped by reconciliation");
        await Platform.WaitUntilAsync(() => Task.FromResult(!Directory.Exists(home)), TimeSpan.FromSeconds(20), "the deleted user's home removed");
        await Platform.WaitUntilAsync(async () => await platform.QueryScalarAsync<string>(
                "SELECT state FROM agent_commands WHERE type = 'home.delete' AND agent_id = 'agent-away'") == "succeeded",
            TimeSpan.FromSeconds(10), "the home.delete command succeeded");
        // Deferred (home.delete first) or done at once (the stop first): either way no deferred deletion is left.
        var deferred = Path.Combine(agent.StateFolder, "home-deletes");
        (Directory.Exists(deferred) ? Directory.GetFileSystemEntries(deferred) : []).ShouldBeEmpty("no deferred deletion left");
    }

    /// <summary>
    /// An agent online, a new user, and their running xterm session with a persistent home on it, holding the user's
    /// <c>notes.txt</c>.
    /// </summary>
    private static async Task<(HttpClient Admin, AgentHandle Agent, string UserId, string SessionId, string Home)> RunSessionWithHomeAsync(
        Platform platform, string agentId, string username)
    {
        var admin = await platform.AdminAsync();
        var agent = await platform.AddAgentAsync(agentId, "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync(agentId) == "online", TimeSpan.FromSeconds(10), "agent online");
        await admin.CreateUserAsync(username, username + "-password-1");
        var users = await admin.GetJsonAsync("/api/v1/users");
        var userId = users.EnumerateArray().Single(u => u.GetProperty("username").GetString() == username).GetProperty("id").GetString()!;
        string id;
        using (var create = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = username, persistentHome = true }))
        {
            create.StatusCode.ShouldBe(HttpStatusCode.Created, await create.Content.ReadAsStringAsync());
            id = (await create.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("id").GetString()!;
        }
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));
        var home = Path.Combine(agent.StateFolder, "homes", "id." + userId);
        Directory.Exists(home).ShouldBeTrue("the session's persistent home");
        await File.WriteAllTextAsync(Path.Combine(home, "notes.txt"), $"the {username}'s data", TestContext.Current.CancellationToken);
        return (admin, agent, userId, id, home);
    }
}
