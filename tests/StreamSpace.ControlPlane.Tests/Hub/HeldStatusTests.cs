using System.Net.WebSockets;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// The session events a connection holds back while the database does not take them (an outage): bounded in count
/// and, through their reasons, in bytes.
/// </summary>
public sealed class HeldStatusTests
{
    [Fact]
    public void A_held_event_keeps_no_more_of_its_reason_than_is_stored_and_the_oldest_goes_when_the_queue_is_full()
    {
        using var socket = WebSocket.CreateFromStream(Stream.Null, new WebSocketCreationOptions());
        using var connection = new AgentConnection("held-agent", "hash", socket, TestContext.Current.CancellationToken);
        connection.TrackedSessionLimit = 2;
        // A reason as long as a frame allows, a surrogate pair across the stored maximum.
        var huge = new string('x', CommandResults.MaxReasonLength - 1) + "\U0001F600" + new string('y', 1024 * 1024 - 2000);

        connection.HoldStatus(new SessionStatusPayload { SessionId = "s1", State = ObservedStates.Crashed, Reason = huge }).ShouldBeNull();
        connection.HoldStatus(new SessionStatusPayload { SessionId = "s2", State = ObservedStates.Exited, Reason = "app exited with code 0" }).ShouldBeNull();
        connection.UnappliedStatuses[0].Reason.ShouldBe(huge[..(CommandResults.MaxReasonLength - 1)], "cut to the column, not inside the pair");
        connection.UnappliedStatuses[1].Reason.ShouldBe("app exited with code 0");

        connection.HoldStatus(new SessionStatusPayload { SessionId = "s3", State = ObservedStates.Running })!.SessionId.ShouldBe("s1");
        connection.UnappliedStatuses.Select(s => s.SessionId).ShouldBe(["s2", "s3"]);
    }
}
