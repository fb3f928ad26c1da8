namespace StreamSpace.ControlPlane.Commands;

/// <summary>States of a row in <c>agent_commands</c>: pending → sent → acked → succeeded | failed | expired.</summary>
public static class CommandState
{
    public const string Pending = "pending";
    public const string Sent = "sent";
    public const string Acked = "acked";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Expired = "expired";

    public static bool IsFinal(string state) => state is Succeeded or Failed or Expired;
}
