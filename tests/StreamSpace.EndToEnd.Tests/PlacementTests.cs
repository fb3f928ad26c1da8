using System.Net;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

public sealed class PlacementTests
{
    /// <summary>Three real agent processes (simulated runtime: placement is what is tested) with maxSessions 5.</summary>
    [Fact]
    public async Task Three_agents_of_five_take_fifteen_concurrent_creates_five_each_and_the_sixteenth_gets_503_with_reasons()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, heartbeatSeconds: 5);
        var admin = await platform.AdminAsync();
        foreach (var id in new[] { "sim-a", "sim-b", "sim-c" })
            await platform.AddAgentAsync(id, "simulated", maxSessions: 5);
        foreach (var id in new[] { "sim-a", "sim-b", "sim-c" })
            await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync(id) == "online", TimeSpan.FromSeconds(10), $"{id} online");

        var users = Enumerable.Range(1, 16).Select(i => $"user{i:00}").ToList();
        foreach (var u in users) await admin.CreateUserAsync(u, "user-password-1");
        var clients = new List<HttpClient>();
        foreach (var u in users) clients.Add(await platform.ClientForAsync(u, "user-password-1"));

        var results = await Task.WhenAll(clients.Take(15).Select(c => c.TryCreateSessionAsync("xterm")));
        results.Count(r => r.Status == HttpStatusCode.Created).ShouldBe(15, string.Join("\n", results.Select(r => r.Body.ToString())));
        var perAgent = results.GroupBy(r => r.Body.GetProperty("agentId").GetString()).ToDictionary(g => g.Key!, g => g.Count());
        perAgent.OrderBy(kv => kv.Key).Select(kv => kv.Value).ShouldBe([5, 5, 5]);

        var (status, body) = await clients[15].TryCreateSessionAsync("xterm");
        status.ShouldBe(HttpStatusCode.ServiceUnavailable);
        body.GetProperty("error").GetString().ShouldBe("No agents available");
        var reasons = body.GetProperty("reasons").EnumerateArray().ToList();
        reasons.Count.ShouldBe(3);
        reasons.ShouldAllBe(r => r.GetProperty("reason").GetString()!.Contains("full"));
    }
}
