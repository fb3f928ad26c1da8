using System.Text.Json;

namespace StreamSpace.Protocol;

/// <summary>A durable command from the control plane. The agent acks it on receipt and answers with a result.</summary>
public sealed record CommandPayload
{
    /// <summary>Stable across redeliveries: the agent deduplicates on it.</summary>
    public required string CommandId { get; init; }
    public required string Type { get; init; }
    public string? SessionId { get; init; }
    public JsonElement Args { get; init; }
    /// <summary>
    /// When the control plane gives up on the command, by the control plane's clock (null: never, or an older control
    /// plane). The agent does not start a command whose time is up: it reads the control plane's clock from the
    /// <c>ts</c> of its <c>welcome</c>, so the two hosts' clocks need not agree.
    /// </summary>
    public DateTimeOffset? ExpiresAt { get; init; }
}

public sealed record AckPayload
{
    public required string CommandId { get; init; }
}

public sealed record ResultPayload
{
    public required string CommandId { get; init; }
    public bool Success { get; init; }
    public string? Error { get; init; }
    public JsonElement? Data { get; init; }
}

/// <summary>An observed change of a session on the agent (ready, exited, crashed, ...).</summary>
public sealed record SessionStatusPayload
{
    public required string SessionId { get; init; }
    /// <summary>One of <see cref="ObservedStates"/>.</summary>
    public required string State { get; init; }
    public string? Reason { get; init; }
}

/// <summary>Arguments of <see cref="CommandTypes.SessionStart"/>.</summary>
public sealed record SessionStartArgs
{
    public required string SessionId { get; init; }
    /// <summary>The owner's username (for people reading logs and accounts).</summary>
    public required string User { get; init; }
    /// <summary>
    /// The owner's user id, which is never given to anybody else (a username is: an admin may delete a user and create
    /// another of the same name). Agents key the session account and the persistent home by it; null from control planes
    /// older than this field, and agents then key them by <see cref="User"/>.
    /// </summary>
    public string? UserId { get; init; }
    /// <summary>
    /// When the owner's user was created. An agent moves a persistent home an older agent kept by username to the user id
    /// only if that home was last changed after this: an older one belonged to an earlier user of the same name. Null from
    /// control planes older than this field, and agents then move no such home.
    /// </summary>
    public DateTimeOffset? UserCreatedAt { get; init; }
    public required string Template { get; init; }
    public required SessionResources Resources { get; init; }
    public bool PersistentHome { get; init; }
    public required SessionLaunchSpec Launch { get; init; }
}

public sealed record SessionResources
{
    public required string Cpu { get; init; }
    public required string Memory { get; init; }
}

/// <summary>What the template says about starting a session, per runtime.</summary>
public sealed record SessionLaunchSpec
{
    /// <summary>Command line for the process runtime (run with /bin/sh -c inside the session's display).</summary>
    public string? ProcessCommand { get; init; }
    public string? DockerImage { get; init; }
    public string? DockerCommand { get; init; }
    public string? KubernetesImage { get; init; }
    public int VncPort { get; init; } = 5900;
    public string HomeMountPath { get; init; } = "/home/user";
    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>();
}

/// <summary>Arguments of <see cref="CommandTypes.StreamOpen"/>.</summary>
public sealed record StreamOpenArgs
{
    public required string StreamId { get; init; }
    /// <summary>Path (relative to the control plane base URL) of the one-time data WebSocket to dial.</summary>
    public required string DataPath { get; init; }
    /// <summary>
    /// Absolute http(s) URL of the same data WebSocket on the replica that waits for it, when that replica has its own
    /// address (<c>StreamSpace:Streaming:ReplicaUrl</c>); the agent then dials it instead of its control-plane URL plus
    /// <see cref="DataPath"/>, which behind a load balancer may reach another replica. Absent otherwise (one replica).
    /// </summary>
    public string? DataUrl { get; init; }
    /// <summary>One-time secret the agent presents on the data WebSocket.</summary>
    public required string Token { get; init; }
}

/// <summary>
/// Arguments of <see cref="CommandTypes.HomeDelete"/>: the control plane deleted this user, so the agent deletes the
/// persistent home it keeps for them (a user id is never given to anybody else, so nobody can need it again).
/// </summary>
public sealed record HomeDeleteArgs
{
    public required string UserId { get; init; }
}
