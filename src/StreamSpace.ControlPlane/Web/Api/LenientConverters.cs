using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>Reads a string, a number or a boolean as text (resources are "2", 2 or "2Gi" depending on the source).</summary>
public sealed class LenientStringConverter : JsonConverter<string?>
{
    public override bool HandleNull => true;

    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.Null => null,
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number => reader.TryGetInt64(out var l) ? l.ToString(CultureInfo.InvariantCulture) : reader.GetDouble().ToString(CultureInfo.InvariantCulture),
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        _ => SkipAndNull(ref reader),
    };

    private static string? SkipAndNull(ref Utf8JsonReader reader)
    {
        reader.Skip();
        return null;
    }

    public override void Write(Utf8JsonWriter writer, string? value, JsonSerializerOptions options)
    {
        if (value is null) writer.WriteNullValue();
        else writer.WriteStringValue(value);
    }
}

/// <summary>
/// Reads a count given as a number, a numeric string, or an object such as <c>{maxSessions: 4}</c> (the first
/// numeric property whose name starts with "max" or is "total"); anything else reads as 0.
/// </summary>
public sealed class LenientIntConverter : JsonConverter<int>
{
    public override int Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Number:
                return reader.TryGetInt32(out var i) ? i : (int)reader.GetDouble();
            case JsonTokenType.String:
                return int.TryParse(reader.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : 0;
            case JsonTokenType.StartObject:
                using (var doc = JsonDocument.ParseValue(ref reader))
                {
                    foreach (var p in doc.RootElement.EnumerateObject())
                    {
                        if ((p.Name.StartsWith("max", StringComparison.OrdinalIgnoreCase) || p.Name.Equals("total", StringComparison.OrdinalIgnoreCase))
                            && p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out var v))
                            return v;
                    }
                }
                return 0;
            default:
                reader.Skip();
                return 0;
        }
    }

    public override void Write(Utf8JsonWriter writer, int value, JsonSerializerOptions options) => writer.WriteNumberValue(value);
}
