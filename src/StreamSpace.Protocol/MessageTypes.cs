namespace StreamSpace.Protocol;

/// <summary>The <c>type</c> field of an <see cref="Envelope"/>.</summary>
public static class MessageTypes
{
    public const string Hello = "hello";
    public const string Welcome = "welcome";
    public const string Refused = "refused";
    public const string Heartbeat = "heartbeat";
    public const string Command = "command";
    public const string Ack = "ack";
    public const string Result = "result";
    public const string SessionStatus = "session.status";
}

/// <summary>The <c>type</c> of a <see cref="CommandPayload"/>.</summary>
public static class CommandTypes
{
    public const string SessionStart = "session.start";
    public const string SessionStop = "session.stop";
    public const string SessionHibernate = "session.hibernate";
    public const string SessionWake = "session.wake";
    /// <summary>Asks the agent to dial a data WebSocket back and splice it to the session's VNC endpoint.</summary>
    public const string StreamOpen = "stream.open";
    /// <summary>Asks the agent to delete a deleted user's persistent home; no session (see <see cref="HomeDeleteArgs"/>).</summary>
    public const string HomeDelete = "home.delete";
}

/// <summary>Platforms (runtimes) an agent can run sessions on.</summary>
public static class Platforms
{
    public const string Process = "process";
    public const string Docker = "docker";
    public const string Kubernetes = "kubernetes";
    /// <summary>Load tests only; never a default.</summary>
    public const string Simulated = "simulated";

    public static readonly IReadOnlyList<string> All = [Process, Docker, Kubernetes, Simulated];
}
