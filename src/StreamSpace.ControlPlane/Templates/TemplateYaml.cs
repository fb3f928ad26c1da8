using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>Reads a template from YAML: the built-in files, and API bodies sent as <c>application/yaml</c>.</summary>
public static partial class TemplateYaml
{
    // Unknown keys are an error (not ignored), so a typo such as "proccess:" is reported instead of silently dropped; so
    // is a key given twice, instead of the last one silently winning.
    private static readonly IDeserializer Deserializer = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .WithDuplicateKeyChecking()
        .Build();

    /// <summary>Parses one template; on failure <paramref name="error"/> says what and where (line, column).</summary>
    public static bool TryParse(string yaml, out TemplateDefinition? template, out string? error)
    {
        try
        {
            template = Deserializer.Deserialize<TemplateDefinition?>(yaml);
            error = template is null ? "the document is empty" : null;
            return template is not null;
        }
        catch (YamlException ex)
        {
            template = null;
            error = $"invalid YAML at line {ex.Start.Line}, column {ex.Start.Column}: {Describe(ex)}";
            return false;
        }
    }

    /// <summary>
    /// The parser's complaint in a template author's words. YamlDotNet names .NET types ("Property 'proccess' not found
    /// on type 'StreamSpace.ControlPlane.Templates.TemplateDefinition'", "... into type System.String, System.Private.CoreLib,
    /// Version=..."), which say nothing to someone writing YAML.
    /// </summary>
    internal static string Describe(YamlException ex)
    {
        if (UnknownKey().Match(ex.Message) is { Success: true } unknown) return $"'{unknown.Groups[1].Value}' is not a template field here";
        if (DuplicateKey().Match(ex.Message) is { Success: true } duplicate) return $"'{duplicate.Groups[1].Value}' appears more than once";
        // A mapping or list tagged onto a place for a plain value (env: !!map {} for one of its values): .NET's own words.
        if (ex.InnerException is InvalidCastException { Message: "Object must implement IConvertible." }) return "expected a plain value here, not a mapping or list";
        var cause = ex.InnerException is { } inner && inner.Message != ex.Message ? inner.Message : null;
        foreach (var said in (string?[])[ex.Message, cause])
        {
            if (said is not null && ExpectedType().Match(said) is { Success: true } expected) return $"expected {Kind(expected.Groups["type"].Value)} here";
        }
        return Plain(cause ?? ex.Message);
    }

    /// <summary>"a text value" for System.String and so on; the shape a value of that .NET type has in YAML.</summary>
    private static string Kind(string typeName)
    {
        if (NullableOf().Match(typeName) is { Success: true } nullable) typeName = nullable.Groups[1].Value;
        typeName = typeName.Split(',')[0].Trim();
        return typeName switch
        {
            "System.String" => "a text value",
            "System.Boolean" => "true or false",
            "System.Int32" or "System.Int64" or "System.Int16" or "System.UInt32" or "System.UInt64" or "System.Byte" => "a whole number",
            "System.Double" or "System.Single" or "System.Decimal" => "a number",
            _ when typeName.Contains("Dictionary", StringComparison.Ordinal) => "a mapping (key: value lines)",
            _ when typeName.Contains("List", StringComparison.Ordinal) || typeName.EndsWith("[]", StringComparison.Ordinal) => "a list",
            _ when typeName.StartsWith("StreamSpace.", StringComparison.Ordinal) => "a mapping (key: value lines)",
            _ => "a value of another kind",
        };
    }

    /// <summary>Any type name left in a message, in words.</summary>
    private static string Plain(string message) => TypeName().Replace(message, m => Kind(m.Value));

    [GeneratedRegex(@"^Property '([^']+)' not found on type '[^']+'")]
    private static partial Regex UnknownKey();

    [GeneratedRegex(@"^Encountered duplicate key (.+)$")]
    private static partial Regex DuplicateKey();

    /// <summary>The .NET type a value had to become, in the ways YamlDotNet says it could not.</summary>
    [GeneratedRegex(@"deserialize the node into type (?<type>[^,]+(?:`1\[\[[^\]]+\]\])?)|create an instance of type '(?<type>[^']+)'|^Invalid cast from '[^']+' to '(?<type>[^']+)'")]
    private static partial Regex ExpectedType();

    [GeneratedRegex(@"Nullable`1\[\[([^,\]]+)")]
    private static partial Regex NullableOf();

    [GeneratedRegex(@"'?(?:System|StreamSpace)\.[\w.`+]+(?:\[\[.*\]\])?(?:, [\w.]+(?:, Version=[\d.]+, Culture=\w+, PublicKeyToken=\w+)?)?'?")]
    private static partial Regex TypeName();
}
