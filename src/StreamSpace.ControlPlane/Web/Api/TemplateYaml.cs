using System.Globalization;
using System.Text.Json;
using StreamSpace.ControlPlane.Templates;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>Turns a template's JSON into YAML for the editor when the API serves JSON only.</summary>
public static class TemplateYaml
{
    // Named as the API's YAML reader names them, so what the editor shows is what a save sends back.
    private static readonly ISerializer Serializer = new SerializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
        // Text that YAML would read as something else (null, ~, true, 12) in quotes, so it comes back as the same text.
        .WithQuotingNecessaryStrings()
        .Build();

    /// <summary>
    /// The template definition in the API's answer, without the catalog's bookkeeping beside it (<c>builtin</c>,
    /// <c>createdAt</c>, <c>updatedAt</c>): a YAML body is refused for any key that is not a template field, so
    /// copying every property of the answer made saving an unchanged template fail. Going through
    /// <see cref="TemplateDefinition"/> keeps any later bookkeeping field out as well.
    /// </summary>
    public static string FromJson(string json) =>
        Serializer.Serialize(JsonSerializer.Deserialize<TemplateDefinition>(json, StreamSpaceApiClient.Json));

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
          command: xterm

        """, name);
}
