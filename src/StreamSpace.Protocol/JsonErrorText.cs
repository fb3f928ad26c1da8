using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace StreamSpace.Protocol;

/// <summary>
/// Plain words for JSON that System.Text.Json refused: which field, and what it takes, in the JSON's own names. The
/// serializer's messages name .NET types ("could not be mapped to any .NET member contained in type
/// 'StreamSpace.ControlPlane.Sessions.CreateSessionRequest'"), which tell an API client, or an operator reading why
/// an agent was refused, nothing they can act on. Used for API request bodies and agent message payloads.
/// </summary>
public static class JsonErrorText
{
    /// <summary>
    /// The message, and for a refused field its path and what is wrong with it (for an API error's <c>fields</c>, as
    /// validation errors give them); no field for the JSON as a whole or malformed JSON.
    /// </summary>
    /// <param name="whole">The JSON as a whole, starting a sentence: "The request body", "The payload".</param>
    /// <param name="container">The same after "is not a field of": "this request", "this message".</param>
    public static (string Message, string? Field, string? Problem) Describe(
        JsonException json, Type? bodyType, JsonSerializerOptions? options, string whole = "The request body", string container = "this request")
    {
        var field = FieldPath(json.Path);
        var said = json.Message;
        string? problem = null;
        if (said.Contains("could not be mapped to any .NET member", StringComparison.Ordinal) && field.Length > 0)
        {
            var takes = FieldsOf(TypeAt(bodyType, Parent(field), options), options);
            problem = $"is not a field of {container}" + (takes is null ? "" : $"; it takes {takes}");
        }
        else if (said.StartsWith("Duplicate propert", StringComparison.Ordinal))
        {
            field = DuplicatedField(field, said);
            problem = $"appears more than once in {container}";
        }
        else if (said.StartsWith("The JSON value could not be converted to", StringComparison.Ordinal)
                 && IsInvalidUtf16(json))
        {
            // A string after all, but one no text can hold: a \uD800-\uDFFF escape without its other half.
            if (field.Length == 0) return ($"{whole} must be text without a lone surrogate (a \\uD800-\\uDFFF escape without its pair).", null, null);
            problem = "must be text without a lone surrogate (a \\uD800-\\uDFFF escape without its pair)";
        }
        else if (said.StartsWith("The JSON value could not be converted to", StringComparison.Ordinal))
        {
            var target = TypeAt(bodyType, field, options);
            if (field.Length == 0)
                return ($"{whole} must be {Expected(target, options, withFields: true) ?? "a JSON value of another kind"}.", null, null);
            problem = $"must be {Expected(target, options, withFields: false) ?? "a value of another kind"}";
        }
        else if (said.IndexOf(MissingRequired, StringComparison.Ordinal) is var at and >= 0)
        {
            var names = said[(at + MissingRequired.Length)..].Trim().TrimEnd('.').Replace("'", "", StringComparison.Ordinal);
            var where = Parent(field) is { Length: > 0 } parent ? $" in '{parent}'" : "";
            return ($"Required field(s) missing{where}: {names}.", null, null);
        }
        if (problem is not null) return ($"'{field}' {problem}.", field, problem);

        // Not JSON at all, or cut short: the reader's own words name no type; say where it stopped.
        var reason = Cut(Cut(said, " Path:"), " LineNumber:").TrimEnd('.');
        var position = json.LineNumber is { } line && json.BytePositionInLine is { } column ? $" (line {line + 1}, byte {column + 1})" : "";
        return ($"{whole} is not valid JSON: {reason}{position}.", null, null);
    }

    private const string MissingRequired = "missing required properties including: ";

    /// <summary>The reader refused a string's escapes as UTF-16 (a lone surrogate); nested once more for a constructor's parameter.</summary>
    private static bool IsInvalidUtf16(Exception json)
    {
        for (var inner = json.InnerException; inner is not null; inner = inner.InnerException)
        {
            if (inner is InvalidOperationException && inner.Message.Contains("UTF-16 JSON text", StringComparison.Ordinal)) return true;
        }
        return false;
    }

    /// <summary>
    /// The repeated field: the serializer names it ("Duplicate property 'role' encountered ..."), by the spelling of the
    /// member it matched where the path has the second one's ("Role"); inside a JSON element (an agent message's
    /// <c>payload</c>) the path stops at the element, so the name is added to it.
    /// </summary>
    private static string DuplicatedField(string field, string said)
    {
        var open = said.IndexOf('\'');
        var close = open < 0 ? -1 : said.IndexOf('\'', open + 1);
        if (close < 0) return field;
        var name = said[(open + 1)..close];
        var parent = Parent(field);
        var last = parent.Length == 0 ? field : field[(parent.Length + 1)..];
        if (string.Equals(last, name, StringComparison.OrdinalIgnoreCase)) return parent.Length == 0 ? name : $"{parent}.{name}";
        return field.Length == 0 ? name : $"{field}.{name}";
    }

    /// <summary>"$.resources.cpu" → "resources.cpu"; "$['a b'][0]" → "a b[0]"; "$" → "".</summary>
    internal static string FieldPath(string? path)
    {
        if (string.IsNullOrEmpty(path) || path == "$") return "";
        var p = path.StartsWith('$') ? path[1..] : path;
        p = p.Replace("['", ".", StringComparison.Ordinal).Replace("']", "", StringComparison.Ordinal);
        return p.TrimStart('.');
    }

    private static string Parent(string field)
    {
        var cut = Math.Max(field.LastIndexOf('.'), field.LastIndexOf('['));
        return cut <= 0 ? "" : field[..cut];
    }

    private static string Cut(string text, string marker) => text.IndexOf(marker, StringComparison.Ordinal) is var i and > 0 ? text[..i] : text;

    /// <summary>The .NET type a field path binds to in <paramref name="root"/>, by the API's JSON names; null when unknown.</summary>
    private static Type? TypeAt(Type? root, string field, JsonSerializerOptions? options)
    {
        var type = root;
        if (type is null || options is null) return null;
        foreach (var part in field.Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = part;
            var indexes = 0;
            if (part.IndexOf('[') is var bracket and >= 0)
            {
                name = part[..bracket];
                indexes = part.Count(c => c == '[');
            }
            if (name.Length > 0)
            {
                var info = Info(type, options);
                type = info?.Properties.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.Ordinal))?.PropertyType;
                if (type is null) return null;
            }
            for (var i = 0; i < indexes; i++)
            {
                type = Info(type, options)?.ElementType;
                if (type is null) return null;
            }
        }
        return type;
    }

    private static JsonTypeInfo? Info(Type type, JsonSerializerOptions options)
    {
        try
        {
            return options.GetTypeInfo(Nullable.GetUnderlyingType(type) ?? type);
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>"template, user, resources and persistentHome" for an object type; null for anything else.</summary>
    private static string? FieldsOf(Type? type, JsonSerializerOptions? options)
    {
        if (type is null || options is null || Info(type, options) is not { Kind: JsonTypeInfoKind.Object } info || info.Properties.Count == 0) return null;
        var names = info.Properties.Where(p => p.Set is not null || p.IsRequired).Select(p => p.Name).ToList();
        if (names.Count == 0) return null;
        return names.Count == 1 ? names[0] : $"{string.Join(", ", names[..^1])} and {names[^1]}";
    }

    /// <summary>What a value of <paramref name="type"/> looks like in JSON, in words.</summary>
    private static string? Expected(Type? type, JsonSerializerOptions? options, bool withFields)
    {
        if (type is null) return null;
        if (type == typeof(bool?)) return "true, false or null";
        if (Nullable.GetUnderlyingType(type) is { } inner) return $"{Expected(inner, options, withFields)} or null";
        if (type == typeof(bool)) return "true or false";
        if (type == typeof(string)) return "a string";
        if (type == typeof(int) || type == typeof(long) || type == typeof(short) || type == typeof(byte) || type == typeof(uint) || type == typeof(ulong))
            return "a whole number";
        if (type == typeof(double) || type == typeof(float) || type == typeof(decimal)) return "a number";
        if (type == typeof(DateTimeOffset) || type == typeof(DateTime)) return "a date and time as an ISO 8601 string";
        if (type == typeof(Guid)) return "a GUID string";
        if (type.IsEnum) return $"one of {string.Join(", ", Enum.GetNames(type).Select(n => JsonNamingPolicy.CamelCase.ConvertName(n)))}";
        return (options is null ? null : Info(type, options)?.Kind) switch
        {
            JsonTypeInfoKind.Enumerable => "a JSON array",
            JsonTypeInfoKind.Dictionary => "a JSON object",
            JsonTypeInfoKind.Object => withFields && FieldsOf(type, options) is { } fields ? $"a JSON object with the fields {fields}" : "a JSON object",
            _ => null,
        };
    }
}
