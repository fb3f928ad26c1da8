namespace StreamSpace.ControlPlane.Templates;

/// <summary>A template as the API shows it: the definition plus catalog bookkeeping.</summary>
public sealed class TemplateView : TemplateDefinition
{
    /// <summary>Shipped in <c>templates/</c> and seeded at start-up (it may since have been edited by an admin).</summary>
    public bool Builtin { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}
