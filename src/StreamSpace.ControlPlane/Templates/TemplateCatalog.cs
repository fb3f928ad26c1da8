namespace StreamSpace.ControlPlane.Templates;

/// <summary>The template catalog. (Being built.)</summary>
public sealed class TemplateCatalog
{
    public Task SeedBuiltInAsync(CancellationToken ct) => Task.CompletedTask;
}
