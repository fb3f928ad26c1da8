using System.Text.Json;

namespace StreamSpace.Protocol;

/// <summary>
/// One JSON message in one WebSocket text frame. <see cref="Payload"/> is kept as raw JSON so a peer
/// can route on <see cref="Type"/> and tolerate payload fields it does not know.
/// </summary>
public sealed record Envelope
{
    /// <summary>Protocol version of the sender.</summary>
    public int V { get; init; } = ProtocolVersion.Current;
    public required string Type { get; init; }
    /// <summary>Unique id of this message.</summary>
    public required string Id { get; init; }
    /// <summary>Id of the message this one answers, if any.</summary>
    public string? Re { get; init; }
    public DateTimeOffset Ts { get; init; }
    public JsonElement Payload { get; init; }

    public static Envelope Create<T>(string type, T payload, DateTimeOffset now, string? re = null) => new()
    {
        Type = type,
        Id = Guid.NewGuid().ToString("N"),
        Re = re,
        Ts = now,
        Payload = JsonSerializer.SerializeToElement(payload, ProtocolJson.Options),
    };

    /// <summary>Reads the payload as <typeparamref name="T"/>; throws <see cref="ProtocolException"/> when it does not fit.</summary>
    public T PayloadAs<T>()
    {
        try
        {
            return Payload.ValueKind == JsonValueKind.Undefined
                ? throw new ProtocolException($"'{Type}' message has no payload")
                : Payload.Deserialize<T>(ProtocolJson.Options) ?? throw new ProtocolException($"'{Type}' message has a null payload");
        }
        catch (JsonException ex)
        {
            throw new ProtocolException($"'{Type}' payload is malformed: {JsonErrorText.Describe(ex, typeof(T), ProtocolJson.Options, "The payload", "this message").Message}", ex);
        }
    }
}

/// <summary>A peer sent something that does not follow the protocol.</summary>
public sealed class ProtocolException : Exception
{
    public ProtocolException(string message) : base(message) { }
    public ProtocolException(string message, Exception inner) : base(message, inner) { }
    public ProtocolException() { }
}
