using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests;

internal static class StartArgs
{
    public static SessionStartArgs For(string sessionId, string command = "xterm") => new()
    {
        SessionId = sessionId,
        User = "alice",
        Template = "xterm",
        Resources = new SessionResources { Cpu = "1", Memory = "1Gi" },
        Launch = new SessionLaunchSpec { ProcessCommand = command },
    };
}
