using System.Globalization;
using System.Text.Json;
using YamlDotNet.Serialization;

namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>Turns a template's JSON into YAML for the editor when the API serves JSON only.</summary>
public static class TemplateYaml
{
    private static readonly ISerializer Serializer = new SerializerBuilder()
        .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
        .Build();

    public static string FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return Serializer.Serialize(ToPlain(doc.RootElement));
    }

    private static object? ToPlain(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().Where(p => p.Value.ValueKind != JsonValueKind.Null)
            .ToDictionary(p => p.Name, p => ToPlain(p.Value)),
        JsonValueKind.Array => e.EnumerateArray().Select(ToPlain).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>An empty template to start a new one from.</summary>
    public static string Skeleton(string name) => string.Format(CultureInfo.InvariantCulture,
        """
        name: {0}
        displayName: {0}
        description: ""
        category: Applications
        icon: ""
        defaultResources:
          cpu: "1"
          memory: 1Gi
        stream:
          protocol: vnc
          port: 5900
        home:
          mountPath: /home/user
        process:
          command: ["xterm"]

        """, name);
}
