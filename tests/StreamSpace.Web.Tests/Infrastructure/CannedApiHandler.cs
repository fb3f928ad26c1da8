using System.Net;
using System.Text;

namespace StreamSpace.Web.Tests.Infrastructure;

/// <summary>
/// Component-level stand-in for the HTTP API: answers each "METHOD /path" with canned JSON (the last answer
/// given for a route repeats) and records every request. Used only by the bUnit component tests; the hosting
/// tests run the real control plane.
/// </summary>
public sealed class CannedApiHandler : HttpMessageHandler
{
    private readonly Dictionary<string, Queue<(HttpStatusCode Status, string Body)>> _answers = [];
    private readonly Lock _gate = new();

    public List<RecordedRequest> Requests { get; } = [];

    /// <summary>Queues an answer for a route such as <c>GET /api/v1/sessions</c>.</summary>
    public CannedApiHandler Answer(string route, HttpStatusCode status, string json)
    {
        lock (_gate)
        {
            if (!_answers.TryGetValue(route, out var queue)) _answers[route] = queue = new Queue<(HttpStatusCode, string)>();
            queue.Enqueue((status, json));
        }
        return this;
    }

    public CannedApiHandler Answer(string route, string json) => Answer(route, HttpStatusCode.OK, json);

    public IReadOnlyList<RecordedRequest> RequestsTo(string route)
    {
        lock (_gate) return Requests.Where(r => r.Route == route).ToList();
    }

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var route = $"{request.Method} {request.RequestUri!.AbsolutePath}";
        var body = request.Content is null ? null : await request.Content.ReadAsStringAsync(cancellationToken);
        (HttpStatusCode Status, string Body) answer;
        lock (_gate)
        {
            Requests.Add(new RecordedRequest(route, request.RequestUri.Query, request.Headers.Authorization?.ToString(), request.Content?.Headers.ContentType?.MediaType, body));
            if (!_answers.TryGetValue(route, out var queue) || queue.Count == 0)
                answer = (HttpStatusCode.NotFound, """{"error":"Not found","message":"No canned answer."}""");
            else answer = queue.Count > 1 ? queue.Dequeue() : queue.Peek();
        }
        return new HttpResponseMessage(answer.Status)
        {
            Content = answer.Body.Length == 0 ? new ByteArrayContent([]) : new StringContent(answer.Body, Encoding.UTF8, "application/json"),
        };
    }
}

public sealed record RecordedRequest(string Route, string Query, string? Authorization, string? ContentType, string? Body);
