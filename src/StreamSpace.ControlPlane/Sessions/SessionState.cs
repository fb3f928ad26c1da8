namespace StreamSpace.ControlPlane.Sessions;

/// <summary>The states of a session (design §5), as stored and as shown in the API.</summary>
public static class SessionState
{
    public const string Pending = "pending";
    public const string Starting = "starting";
    public const string Running = "running";
    public const string Hibernating = "hibernating";
    public const string Hibernated = "hibernated";
    public const string Waking = "waking";
    public const string Terminating = "terminating";
    public const string Terminated = "terminated";
    public const string Failed = "failed";

    public static readonly IReadOnlyList<string> All =
        [Pending, Starting, Running, Hibernating, Hibernated, Waking, Terminating, Terminated, Failed];

    /// <summary>States that count against quota and agent capacity.</summary>
    public static readonly IReadOnlyList<string> Live =
        [Pending, Starting, Running, Hibernating, Hibernated, Waking, Terminating];

    public static bool IsFinal(string state) => state is Terminated or Failed;

    /// <summary>SQL list of the live states, for <c>state IN (...)</c>.</summary>
    public static readonly string LiveSqlList = string.Join(", ", Live.Select(s => $"'{s}'"));
}
