using System.Net;
using System.Text;

namespace StreamSpace.Web.Tests.Infrastructure;

/// <summary>
/// Component-level stand-in for the HTTP API: answers each "METHOD /path" with canned JSON (the last answer
/// given for a route repeats) and records every request. A route may name a query too
/// (<c>GET /api/v1/sessions?live=true&amp;limit=500</c>); a request with that exact query gets those answers first. Used only by the bUnit component tests; the hosting
/// tests run the real control plane.
/// </summary>
public sealed class CannedApiHandler : HttpMessageHandler
{
    private readonly Dictionary<string, Queue<(HttpStatusCode Status, string Body, string? Link)>> _answers = [];
    private readonly Dictionary<string, string> _fallbacks = [];
    private readonly Dictionary<string, TaskCompletionSource> _held = [];
    private readonly Lock _gate = new();

    public List<RecordedRequest> Requests { get; } = [];

    /// <summary>Queues an answer for a route such as <c>GET /api/v1/sessions</c>; <paramref name="link"/> becomes its Link header.</summary>
    public CannedApiHandler Answer(string route, HttpStatusCode status, string json, string? link = null)
    {
        lock (_gate)
        {
            if (!_answers.TryGetValue(route, out var queue)) _answers[route] = queue = new Queue<(HttpStatusCode, string, string?)>();
            queue.Enqueue((status, json, link));
        }
        return this;
    }

    /// <summary>The answer for a route that has no queued answer (a test's own answers come first).</summary>
    public CannedApiHandler Fallback(string route, string json)
    {
        lock (_gate) _fallbacks[route] = json;
        return this;
    }

    public CannedApiHandler Answer(string route, string json, string? link = null) => Answer(route, HttpStatusCode.OK, json, link);

    /// <summary>
    /// A slow API: requests to <paramref name="route"/> are recorded at once but answered only after the returned
    /// action is called, so a test can act while one is in flight (a second click before the first is answered).
    /// </summary>
    public Action Hold(string route)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate) _held[route] = held;
        return () => held.TrySetResult();
    }

    /// <summary>Requests to a route, with any query; or, when <paramref name="route"/> names a query, with exactly that one.</summary>
    public IReadOnlyList<RecordedRequest> RequestsTo(string route)
    {
        lock (_gate) return Requests.Where(r => r.Route == route || r.Route + r.Query == route).ToList();
    }

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var route = $"{request.Method} {request.RequestUri!.AbsolutePath}";
        var body = request.Content is null ? null : await request.Content.ReadAsStringAsync(cancellationToken);
        (HttpStatusCode Status, string Body, string? Link) answer;
        TaskCompletionSource? held;
        lock (_gate)
        {
            Requests.Add(new RecordedRequest(route, request.RequestUri.Query, request.Headers.Authorization?.ToString(), request.Content?.Headers.ContentType?.MediaType, body));
            if ((!_answers.TryGetValue(route + request.RequestUri.Query, out var queue) || queue.Count == 0)
                && (!_answers.TryGetValue(route, out queue) || queue.Count == 0))
                answer = _fallbacks.TryGetValue(route + request.RequestUri.Query, out var fallback) ? (HttpStatusCode.OK, fallback, null)
                    : (HttpStatusCode.NotFound, """{"error":"Not found","message":"No canned answer."}""", null);
            else answer = queue.Count > 1 ? queue.Dequeue() : queue.Peek();
            _held.TryGetValue(route, out held);
        }
        if (held is not null) await held.Task.WaitAsync(cancellationToken);
        var response = new HttpResponseMessage(answer.Status)
        {
            Content = answer.Body.Length == 0 ? new ByteArrayContent([]) : new StringContent(answer.Body, Encoding.UTF8, "application/json"),
        };
        if (answer.Link is not null) response.Headers.TryAddWithoutValidation("Link", answer.Link);
        return response;
    }
}

public sealed record RecordedRequest(string Route, string Query, string? Authorization, string? ContentType, string? Body);
