using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// A deleted user's persistent home, with real processes: the control plane queues <c>home.delete</c> to the agent where
/// the user's session had it, and the agent removes the folder with the user's files.
/// </summary>
public sealed class UserHomeDeletionTests
{
    [Fact]
    public async Task Deleting_a_user_removes_their_persistent_home_from_the_agent()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        var agent = await platform.AddAgentAsync("agent-homes", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-homes") == "online", TimeSpan.FromSeconds(10), "agent online");
        await admin.CreateUserAsync("leaver", "leaver-password-1");
        var users = await admin.GetJsonAsync("/api/v1/users");
        var userId = users.EnumerateArray().Single(u => u.GetProperty("username").GetString() == "leaver").GetProperty("id").GetString()!;

        string id;
        using (var create = await admin.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm", user = "leaver", persistentHome = true }))
        {
            create.StatusCode.ShouldBe(HttpStatusCode.Created, await create.Content.ReadAsStringAsync());
            id = (await create.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>()).GetProperty("id").GetString()!;
        }
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));
        var home = Path.Combine(agent.StateFolder, "homes", "id." + userId);
        Directory.Exists(home).ShouldBeTrue("the session's persistent home");
        await File.WriteAllTextAsync(Path.Combine(home, "notes.txt"), "the leaver's data", TestContext.Current.CancellationToken);

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
}
