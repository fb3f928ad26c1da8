using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Components;
using Microsoft.AspNetCore.Components.Authorization;

namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>
/// The UI's typed client of the StreamSpace HTTP API (design §4), calling it as the signed-in user with the API
/// token kept in the cookie ticket. A 401 means the sign-in expired: the browser is sent to the sign-in page,
/// which comes back here afterwards.
/// </summary>
public sealed class StreamSpaceApiClient(HttpClient http, AuthenticationStateProvider authentication, NavigationManager navigation)
{
    public const string YamlMediaType = "application/yaml";

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    // Templates
    public Task<ApiResult<List<TemplateBody>>> ListTemplatesAsync(CancellationToken ct) =>
        SendAsync<List<TemplateBody>>(HttpMethod.Get, "api/v1/templates", null, ct);

    /// <summary>The template as YAML text for editing (the API's JSON converted when it does not serve YAML).</summary>
    public async Task<ApiResult<string>> GetTemplateYamlAsync(string name, CancellationToken ct)
    {
        using var request = await CreateRequestAsync(HttpMethod.Get, $"api/v1/templates/{Uri.EscapeDataString(name)}", null);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(YamlMediaType));
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json", 0.5));
        var (response, failure) = await TrySendAsync<string>(request, ct);
        if (response is null) return failure!;
        using (response)
        {
            if (!response.IsSuccessStatusCode) return await FailureAsync<string>(response, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            var mediaType = response.Content.Headers.ContentType?.MediaType ?? "";
            return ApiResult.Success<string>((int)response.StatusCode, mediaType.Contains("json", StringComparison.OrdinalIgnoreCase) ? TemplateYaml.FromJson(text) : text);
        }
    }

    /// <summary>Creates (POST) or replaces (PUT) a template from YAML; validation errors come back as fields.</summary>
    public async Task<ApiResult<NoContent>> SaveTemplateYamlAsync(string name, string yaml, bool create, CancellationToken ct)
    {
        var content = new StringContent(yaml, Encoding.UTF8, YamlMediaType);
        return await SendAsync<NoContent>(create ? HttpMethod.Post : HttpMethod.Put, $"api/v1/templates/{Uri.EscapeDataString(name)}", content, ct);
    }

    public Task<ApiResult<NoContent>> DeleteTemplateAsync(string name, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"api/v1/templates/{Uri.EscapeDataString(name)}", null, ct);

    // Sessions
    /// <summary>
    /// Sessions newest first, following the API's pages (its <c>Link: rel="next"</c>) until <see cref="SessionQuery.Want"/>
    /// sessions are read or none are left. <see cref="SessionList.More"/> says whether older ones exist beyond them.
    /// </summary>
    public async Task<ApiResult<SessionList>> ListSessionsAsync(SessionQuery query, CancellationToken ct)
    {
        var sessions = new List<SessionBody>();
        string? next = "api/v1/sessions" + query.ToQueryString();
        while (next is not null && sessions.Count < query.Want)
        {
            string? link = null;
            var page = await SendAsync<List<SessionBody>>(HttpMethod.Get, next, null, ct, response => link = NextLink(response));
            if (!page.IsSuccess) return ApiResult.Failure<SessionList>(page.Status, page.Error);
            sessions.AddRange(page.Value ?? []);
            next = link;
        }
        return ApiResult.Success(200, new SessionList(sessions, next is not null));
    }

    /// <summary>The target of a <c>Link: &lt;url&gt;; rel="next"</c> header, relative to the API's base address.</summary>
    internal static string? NextLink(HttpResponseMessage response)
    {
        if (!response.Headers.TryGetValues("Link", out var values)) return null;
        foreach (var value in values)
        foreach (var part in value.Split(','))
        {
            var open = part.IndexOf('<', StringComparison.Ordinal);
            var close = part.IndexOf('>', StringComparison.Ordinal);
            if (open < 0 || close < open || !part[close..].Contains("rel=\"next\"", StringComparison.Ordinal)) continue;
            return part[(open + 1)..close].TrimStart('/');
        }
        return null;
    }

    public Task<ApiResult<SessionBody>> GetSessionAsync(string id, CancellationToken ct) =>
        SendAsync<SessionBody>(HttpMethod.Get, $"api/v1/sessions/{Uri.EscapeDataString(id)}", null, ct);

    public Task<ApiResult<SessionBody>> CreateSessionAsync(CreateSessionBody body, CancellationToken ct) =>
        SendAsync<SessionBody>(HttpMethod.Post, "api/v1/sessions", JsonContent.Create(body, options: Json), ct);

    public Task<ApiResult<NoContent>> TerminateSessionAsync(string id, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"api/v1/sessions/{Uri.EscapeDataString(id)}", null, ct);

    public Task<ApiResult<NoContent>> HibernateSessionAsync(string id, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Post, $"api/v1/sessions/{Uri.EscapeDataString(id)}/hibernate", null, ct);

    public Task<ApiResult<NoContent>> WakeSessionAsync(string id, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Post, $"api/v1/sessions/{Uri.EscapeDataString(id)}/wake", null, ct);

    // Agents
    public Task<ApiResult<List<AgentBody>>> ListAgentsAsync(CancellationToken ct) =>
        SendAsync<List<AgentBody>>(HttpMethod.Get, "api/v1/agents", null, ct);

    public Task<ApiResult<AgentCredentialsBody>> CreateAgentAsync(CreateAgentBody body, CancellationToken ct) =>
        SendAsync<AgentCredentialsBody>(HttpMethod.Post, "api/v1/agents", JsonContent.Create(body, options: Json), ct);

    public Task<ApiResult<NoContent>> DrainAgentAsync(string agentId, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Post, $"api/v1/agents/{Uri.EscapeDataString(agentId)}/drain", null, ct);

    public Task<ApiResult<NoContent>> UndrainAgentAsync(string agentId, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Post, $"api/v1/agents/{Uri.EscapeDataString(agentId)}/undrain", null, ct);

    /// <summary><paramref name="force"/> deletes even while the agent may still run sessions it has not confirmed stopping.</summary>
    public Task<ApiResult<NoContent>> DeleteAgentAsync(string agentId, bool force, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"api/v1/agents/{Uri.EscapeDataString(agentId)}{(force ? "?force=true" : "")}", null, ct);

    // Users
    public Task<ApiResult<List<UserBody>>> ListUsersAsync(CancellationToken ct) =>
        SendAsync<List<UserBody>>(HttpMethod.Get, "api/v1/users", null, ct);

    public Task<ApiResult<UserBody>> CreateUserAsync(CreateUserBody body, CancellationToken ct) =>
        SendAsync<UserBody>(HttpMethod.Post, "api/v1/users", JsonContent.Create(body, options: Json), ct);

    public Task<ApiResult<UserBody>> UpdateUserAsync(string id, UpdateUserBody body, CancellationToken ct) =>
        SendAsync<UserBody>(HttpMethod.Patch, $"api/v1/users/{Uri.EscapeDataString(id)}", JsonContent.Create(body, options: Json), ct);

    public Task<ApiResult<NoContent>> DeleteUserAsync(string id, CancellationToken ct) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"api/v1/users/{Uri.EscapeDataString(id)}", null, ct);

    // Audit
    /// <summary>The newest <paramref name="limit"/> entries (at most the API's <see cref="Audit.AuditApi.MaxLimit"/>).</summary>
    public Task<ApiResult<List<AuditEntryBody>>> ListAuditAsync(string? user, string? action, int limit, CancellationToken ct)
    {
        var query = new List<string>();
        if (!string.IsNullOrWhiteSpace(user)) query.Add("user=" + Uri.EscapeDataString(user.Trim()));
        if (!string.IsNullOrWhiteSpace(action)) query.Add("action=" + Uri.EscapeDataString(action.Trim()));
        // Without a limit the API answers its default (100) whatever the page wants to show.
        query.Add("limit=" + Math.Clamp(limit, 1, Audit.AuditApi.MaxLimit).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return SendAsync<List<AuditEntryBody>>(HttpMethod.Get, "api/v1/audit?" + string.Join('&', query), null, ct);
    }

    private async Task<ApiResult<T>> SendAsync<T>(HttpMethod method, string path, HttpContent? content, CancellationToken ct,
        Action<HttpResponseMessage>? onSuccess = null)
    {
        using var request = await CreateRequestAsync(method, path, content);
        var (response, failure) = await TrySendAsync<T>(request, ct);
        if (response is null) return failure!;
        using (response)
        {
            if (!response.IsSuccessStatusCode) return await FailureAsync<T>(response, ct);
            onSuccess?.Invoke(response);
            if (typeof(T) == typeof(NoContent) || response.StatusCode == HttpStatusCode.NoContent || response.Content.Headers.ContentLength == 0)
                return ApiResult.Success<T>((int)response.StatusCode, default);
            try
            {
                var value = await response.Content.ReadFromJsonAsync<T>(Json, ct);
                return ApiResult.Success<T>((int)response.StatusCode, value);
            }
            catch (JsonException ex)
            {
                return ApiResult.Failure<T>(0, new ApiErrorBody("Unreadable answer", $"The API answered something the page cannot read: {ex.Message}"));
            }
        }
    }

    private async Task<HttpRequestMessage> CreateRequestAsync(HttpMethod method, string path, HttpContent? content)
    {
        var request = new HttpRequestMessage(method, path) { Content = content };
        var state = await authentication.GetAuthenticationStateAsync();
        if (state.User.FindFirst(WebAuthentication.ApiTokenClaim)?.Value is { Length: > 0 } token)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        return request;
    }

    /// <summary>Sends; a network failure or timeout becomes a failed result in words instead of an exception.</summary>
    private async Task<(HttpResponseMessage? Response, ApiResult<T>? Failure)> TrySendAsync<T>(HttpRequestMessage request, CancellationToken ct)
    {
        try
        {
            return (await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, ct), null);
        }
        catch (HttpRequestException ex)
        {
            return (null, ApiResult.Failure<T>(0, new ApiErrorBody("Unreachable", $"The control plane did not answer: {ex.Message}")));
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, ApiResult.Failure<T>(0, new ApiErrorBody("Timeout", "The control plane took too long to answer; try again.")));
        }
    }

    private async Task<ApiResult<T>> FailureAsync<T>(HttpResponseMessage response, CancellationToken ct)
    {
        var status = (int)response.StatusCode;
        ApiErrorBody? error = null;
        try
        {
            error = await response.Content.ReadFromJsonAsync<ApiErrorBody>(Json, ct);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
        {
            // Not our JSON error body (e.g. a proxy's HTML page): the status alone has to say it.
        }
        if (status == StatusCodes.Status401Unauthorized) SendToSignIn();
        return ApiResult.Failure<T>(status, error);
    }

    /// <summary>The sign-in expired or was revoked: sign in again and come back to this page.</summary>
    private void SendToSignIn()
    {
        var returnUrl = "/" + navigation.ToBaseRelativePath(navigation.Uri);
        navigation.NavigateTo($"/signin?expired=1&returnUrl={Uri.EscapeDataString(returnUrl)}", forceLoad: true);
    }
}
