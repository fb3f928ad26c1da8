using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>The few API calls the end-to-end tests make, with the response body in every failure message.</summary>
public static class ApiCalls
{
    public static async Task<JsonElement> CreateSessionAsync(this HttpClient client, string template, string? user = null)
    {
        using var response = await client.PostAsJsonAsync("/api/v1/sessions", new { template, user, persistentHome = false });
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(HttpStatusCode.Created, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<(HttpStatusCode Status, JsonElement Body)> TryCreateSessionAsync(this HttpClient client, string template, string? user = null)
    {
        using var response = await client.PostAsJsonAsync("/api/v1/sessions", new { template, user, persistentHome = false });
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    public static async Task<JsonElement> GetJsonAsync(this HttpClient client, string url)
    {
        using var response = await client.GetAsync(url);
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(HttpStatusCode.OK, $"GET {url}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<string> SessionStateAsync(this HttpClient client, string id) =>
        (await client.GetJsonAsync($"/api/v1/sessions/{id}")).GetProperty("state").GetString()!;

    public static async Task<string> AgentStatusAsync(this HttpClient client, string agentId) =>
        (await client.GetJsonAsync($"/api/v1/agents/{agentId}")).GetProperty("status").GetString()!;

    public static async Task WaitForSessionStateAsync(this HttpClient client, string id, string state, TimeSpan timeout) =>
        await Platform.WaitUntilAsync(async () => await client.SessionStateAsync(id) == state, timeout, $"session {id} {state}", 200);

    public static async Task CreateUserAsync(this HttpClient admin, string username, string password, int maxSessions = 5)
    {
        using var response = await admin.PostAsJsonAsync("/api/v1/users", new { username, password, role = "user", maxSessions });
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(HttpStatusCode.Created, text);
    }
}
