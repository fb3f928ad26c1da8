using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>Reads a template from YAML: the built-in files, and API bodies sent as <c>application/yaml</c>.</summary>
public static class TemplateYaml
{
    // Unknown keys are an error (not ignored), so a typo such as "proccess:" is reported instead of silently dropped.
    private static readonly IDeserializer Deserializer = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
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
            var inner = ex.InnerException is { } cause && cause.Message != ex.Message ? $" ({cause.Message})" : "";
            error = $"invalid YAML at line {ex.Start.Line}, column {ex.Start.Column}: {ex.Message}{inner}";
            return false;
        }
    }
}
