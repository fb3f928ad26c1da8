using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamSpace.Protocol;

/// <summary>Serializer settings and the frame codec shared by both ends.</summary>
public static class ProtocolJson
{
    /// <summary>Largest text frame either side accepts. Inventories of hundreds of sessions fit easily.</summary>
    public const int MaxFrameBytes = 1024 * 1024;

    /// <summary>
    /// camelCase, case-insensitive names. A field given twice is refused, not "the last one wins" (an envelope saying
    /// both heartbeat and hello would be taken as a hello), and numbers are JSON numbers, never text: both ends write
    /// them so, and the web defaults' lenient reading let a payload of the wrong shape through.
    /// </summary>
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        AllowDuplicateProperties = false,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public static byte[] Encode(Envelope envelope) => JsonSerializer.SerializeToUtf8Bytes(envelope, Options);

    /// <summary>
    /// Decodes one frame. Unknown fields are ignored; a newer or older unsupported version is an error, and then
    /// <paramref name="envelope"/> is still set (so the caller can tell it from a frame that is no envelope, and name it).
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> frame, out Envelope? envelope, out string? error)
    {
        envelope = null;
        if (frame.Length > MaxFrameBytes)
        {
            error = $"frame of {frame.Length} bytes exceeds the {MaxFrameBytes}-byte limit";
            return false;
        }
        try
        {
            envelope = JsonSerializer.Deserialize<Envelope>(frame, Options);
        }
        catch (JsonException ex)
        {
            error = JsonErrorText.Describe(ex, typeof(Envelope), Options, "The frame", "this message").Message;
            return false;
        }
        if (envelope is null || string.IsNullOrEmpty(envelope.Type) || string.IsNullOrEmpty(envelope.Id))
        {
            error = "envelope needs 'type' and 'id'";
            envelope = null;
            return false;
        }
        if (!ProtocolVersion.IsSupported(envelope.V))
        {
            error = $"protocol version {envelope.V} is not supported (supported: {ProtocolVersion.MinSupported}..{ProtocolVersion.Current})";
            return false;
        }
        error = null;
        return true;
    }
}
