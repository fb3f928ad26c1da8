using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Runtimes.Process;
using StreamSpace.Agent.Runtimes.Simulated;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Hosting;

/// <summary>Picks the runtime named by <see cref="AgentOptions.Runtime"/> (validated before).</summary>
public static class RuntimeFactory
{
    public static ISessionRuntime Create(AgentOptions options, ILoggerFactory loggerFactory, TimeProvider time) => options.Runtime switch
    {
        Platforms.Process when !OperatingSystem.IsLinux() => throw new AgentOptionsException("the process runtime needs Linux (Xvnc, process groups, /proc)"),
        Platforms.Process => new ProcessRuntime(options, loggerFactory.CreateLogger<ProcessRuntime>(), time),
        Platforms.Simulated => new SimulatedRuntime(),
        _ => throw new AgentOptionsException($"runtime '{options.Runtime}' is not built yet"),
    };
}
