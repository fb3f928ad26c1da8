using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>
/// Set-up a script would do over the HTTP API with a bearer token (users, sessions), so a journey spends its
/// browser steps only on what it checks.
/// </summary>
public sealed class ApiScript : IDisposable
{
    private readonly HttpClient _http;

    private ApiScript(HttpClient http) => _http = http;

    public static async Task<ApiScript> SignInAsync(Uri baseAddress, string username, string password)
    {
        var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
        using var login = await http.PostAsJsonAsync("api/v1/auth/login", new { username, password });
        login.StatusCode.ShouldBe(HttpStatusCode.OK, await login.Content.ReadAsStringAsync());
        var token = (await login.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return new ApiScript(http);
    }

    public async Task CreateUserAsync(string username, string password)
    {
        using var created = await _http.PostAsJsonAsync("api/v1/users", new { username, password, role = "user" });
        created.StatusCode.ShouldBe(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
    }

    /// <summary>Creates a session; the embedded agent dials in shortly after the control plane is ready, so 503 until then.</summary>
    public async Task<string> CreateSessionAsync(string template)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            using var created = await _http.PostAsJsonAsync("api/v1/sessions", new { template });
            if (created.StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
                continue;
            }
            created.StatusCode.ShouldBe(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
            return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        }
    }

    /// <summary>Waits until the session runs (its xterm under Xvnc started by the embedded agent).</summary>
    public async Task WaitForRunningAsync(string sessionId)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var state = (await _http.GetFromJsonAsync<JsonElement>($"api/v1/sessions/{Uri.EscapeDataString(sessionId)}")).GetProperty("state").GetString();
            if (state == "running") return;
            state.ShouldNotBeOneOf(["failed", "terminated"], $"session {sessionId}");
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"session {sessionId} is still {state}");
            await Task.Delay(300);
        }
    }

    /// <summary>Waits until the embedded agent is online, so a session created next is placed at once.</summary>
    public async Task WaitForAgentOnlineAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var agents = await _http.GetFromJsonAsync<JsonElement>("api/v1/agents");
            if (agents.EnumerateArray().Any(a => a.GetProperty("status").GetString() == "online")) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException("No agent came online within 30 s.");
            await Task.Delay(250);
        }
    }

    public void Dispose() => _http.Dispose();
}
