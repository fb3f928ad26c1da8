using System.Reflection;

namespace StreamSpace.Agent.Hosting;

/// <summary>The agent software version reported in hello.</summary>
internal static class AgentVersion
{
    public static readonly string Value =
        typeof(AgentVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(AgentVersion).Assembly.GetName().Version?.ToString()
        ?? "0.0.0";
}
