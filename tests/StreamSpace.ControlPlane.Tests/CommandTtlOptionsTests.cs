using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// A command is redelivered until its TTL ends, and an agent remembers a finished command for 24 h: a longer TTL would
/// let a start whose result was lost reach an agent that forgot it and run a second time (invariant 2).
/// </summary>
public sealed class CommandTtlOptionsTests
{
    [Fact]
    public void A_command_ttl_longer_than_agents_remember_commands_is_refused_at_start_saying_why()
    {
        new StreamSpaceOptions { CommandTtl = CommandRecords.MinRetention }.Validate();
        new StreamingOptions { StreamOpenCommandTtl = CommandRecords.MinRetention }.Validate().ShouldBeEmpty();

        var tooLong = CommandRecords.MinRetention + TimeSpan.FromSeconds(1);
        Should.Throw<StreamSpaceConfigurationException>(new StreamSpaceOptions { CommandTtl = tooLong }.Validate).Message
            .ShouldContain("StreamSpace__CommandTtl must be positive and at most 1.00:00:00: agents remember a finished command for 24 h, and one redelivered later could run twice");
        new StreamingOptions { StreamOpenCommandTtl = tooLong }.Validate().ShouldBe([
            "StreamSpace__Streaming__StreamOpenCommandTtl must be positive and at most 1.00:00:00: agents remember a finished command for 24 h, and one redelivered later could run twice",
        ]);
        Should.Throw<StreamSpaceConfigurationException>(new StreamSpaceOptions { CommandTtl = TimeSpan.Zero }.Validate).Message
            .ShouldContain("StreamSpace__CommandTtl must be positive");
        Should.Throw<StreamSpaceConfigurationException>(new StreamSpaceOptions { HomeDeleteCommandTtl = tooLong }.Validate).Message
            .ShouldContain("StreamSpace__HomeDeleteCommandTtl must be positive and at most 1.00:00:00");
    }
}
