using Microsoft.Extensions.Configuration;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// A name under StreamSpace__ that no setting has is refused at start with the nearest real one, in every section and
/// whether or not the section's reader runs (the Agent section with the embedded agent off).
/// </summary>
public sealed class SettingNamesTests
{
    private static StreamSpaceOptions Read(params (string Key, string Value)[] settings) =>
        StreamSpaceOptions.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))
                .Append(new("StreamSpace:DataFolder", Path.GetTempPath())))
            .Build());

    [Theory]
    [InlineData("StreamSpace:Agent:MaxSesions", "StreamSpace__Agent__MaxSesions is not a setting (did you mean StreamSpace__Agent__MaxSessions?)")]
    [InlineData("StreamSpace:IdelTimeout", "StreamSpace__IdelTimeout is not a setting (did you mean StreamSpace__IdleTimeout?)")]
    [InlineData("StreamSpace:Web:AuditPagesize2", "StreamSpace__Web__AuditPagesize2 is not a setting (did you mean StreamSpace__Web__AuditPageSize?)")]
    [InlineData("StreamSpace:Bogus", "StreamSpace__Bogus is not a setting")]
    public void A_name_no_setting_has_is_refused_with_the_embedded_agent_off(string key, string problem)
    {
        var message = Should.Throw<StreamSpaceConfigurationException>(() => Read((key, "5"), ("StreamSpace:EmbeddedAgent", "false"))).Message;
        message.ShouldBe($"Invalid StreamSpace configuration: {problem}");
    }

    [Fact]
    public void Real_names_in_any_case_and_every_section_pass()
    {
        var options = Read(("StreamSpace:idletimeout", "00:05:00"), ("StreamSpace:Agent:MaxSessions", "3"), ("StreamSpace:Agent:SharedStateRoot", "/var/lib/x"),
            ("StreamSpace:Web:AuditPageSize", "50"), ("StreamSpace:Streaming:TicketLifetime", "00:00:30"), ("StreamSpace:EmbeddedAgent", "false"));
        options.IdleTimeout.ShouldBe(TimeSpan.FromMinutes(5));
    }
}
