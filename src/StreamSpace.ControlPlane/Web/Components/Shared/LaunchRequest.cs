using StreamSpace.ControlPlane.Web.Api;

namespace StreamSpace.ControlPlane.Web.Components.Shared;

/// <summary>What the user chose on a template card: the template, and optionally resources and a persistent home.</summary>
public sealed record LaunchRequest(string Template, ResourcesBody? Resources, bool? PersistentHome);
