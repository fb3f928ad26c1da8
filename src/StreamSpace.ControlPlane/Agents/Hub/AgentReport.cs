using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// One report an agent sent that changes the database: an ack, a result or a <c>session.status</c> event.
/// The hub queues them per connection, in the order they arrived, and applies them in batches.
/// </summary>
internal readonly record struct AgentReport(AckPayload? Ack, ResultPayload? Result, SessionStatusPayload? Status)
{
    public static AgentReport Of(AckPayload ack) => new(ack, null, null);
    public static AgentReport Of(ResultPayload result) => new(null, result, null);
    public static AgentReport Of(SessionStatusPayload status) => new(null, null, status);
}
