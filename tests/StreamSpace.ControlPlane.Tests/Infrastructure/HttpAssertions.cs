using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

public static class HttpAssertions
{
    /// <summary>Asserts the status and that the body is an error object with <c>error</c> and <c>message</c>; returns it.</summary>
    public static async Task<JsonElement> ShouldBeErrorAsync(this HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(status, $"body: {text}");
        var json = JsonDocument.Parse(text).RootElement;
        json.TryGetProperty("error", out var error).ShouldBeTrue($"no 'error' in {text}");
        error.GetString().ShouldNotBeNullOrWhiteSpace();
        json.TryGetProperty("message", out var message).ShouldBeTrue($"no 'message' in {text}");
        message.GetString().ShouldNotBeNullOrWhiteSpace();
        // Messages speak the API's language: a .NET type name tells a client nothing it can act on.
        foreach (var internals in (string[])[".NET", "StreamSpace.", "System."])
            message.GetString()!.ShouldNotContain(internals, Case.Sensitive, $"internal names in the message of {text}");
        return json;
    }

    public static async Task<JsonElement> ShouldBeJsonAsync(this HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(status, $"body: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient client, string url, object body) =>
        client.PostAsJsonAsync(url, body);

    public static Task<HttpResponseMessage> PostRawAsync(this HttpClient client, string url, string body, string contentType = "application/json") =>
        client.PostAsync(url, new StringContent(body, System.Text.Encoding.UTF8, contentType));
}
