using System.Text.Json.Serialization;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>A template as the API shows it: the definition plus catalog bookkeeping (listed after the definition).</summary>
public sealed class TemplateView : TemplateDefinition
{
    /// <summary>Shipped in <c>templates/</c> and seeded at start-up (it may since have been edited by an admin).</summary>
    [JsonPropertyOrder(1)]
    public bool Builtin { get; set; }
    [JsonPropertyOrder(1)]
    public DateTimeOffset CreatedAt { get; set; }
    [JsonPropertyOrder(1)]
    public DateTimeOffset UpdatedAt { get; set; }
}
