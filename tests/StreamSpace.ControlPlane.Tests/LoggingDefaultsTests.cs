using Microsoft.Extensions.DependencyInjection;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// What the control plane logs when the operator says nothing: its own events from Information up, ASP.NET Core's
/// per-request lines only from Warning up; and the operator's Logging settings still win.
/// </summary>
public sealed class LoggingDefaultsTests : IDisposable
{
    private readonly string _data = Directory.CreateTempSubdirectory("streamspace-logging-").FullName;

    public void Dispose() => Directory.Delete(_data, recursive: true);

    // Not quiet, unlike other in-process tests: the levels when nothing is said are the point here.
    private WebApplication Build(params string[] extra) =>
        StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(_data, embeddedAgent: false, extra, quiet: false));

    [Fact]
    public async Task Request_lines_of_the_framework_are_off_by_default_and_the_control_plane_events_are_on()
    {
        await using var app = Build();
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        loggers.CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics").IsEnabled(LogLevel.Information).ShouldBeFalse();
        loggers.CreateLogger("Microsoft.AspNetCore.Routing.EndpointMiddleware").IsEnabled(LogLevel.Information).ShouldBeFalse();
        loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel").IsEnabled(LogLevel.Warning).ShouldBeTrue();
        loggers.CreateLogger("StreamSpace.ControlPlane.Commands.CommandResults").IsEnabled(LogLevel.Information).ShouldBeTrue();
        loggers.CreateLogger("Microsoft.Hosting.Lifetime").IsEnabled(LogLevel.Information).ShouldBeTrue(); // "Now listening on"
    }

    [Fact]
    public async Task The_operators_logging_settings_win_over_the_default()
    {
        await using var app = Build("--Logging:LogLevel:Microsoft.AspNetCore=Information");
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        loggers.CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics").IsEnabled(LogLevel.Information).ShouldBeTrue();
    }

    [Fact]
    public async Task Log_timestamps_are_UTC_as_their_Z_says_and_parse_as_RFC_3339()
    {
        await using var app = Build();
        var json = app.Services.GetRequiredService<IOptionsMonitor<JsonConsoleFormatterOptions>>().CurrentValue;
        json.UseUtcTimestamp.ShouldBeTrue("a host not set to UTC would log its local time with a Z after it");
        var written = new DateTimeOffset(2026, 12, 1, 2, 25, 6, 320, TimeSpan.Zero).ToString(json.TimestampFormat, CultureInfo.InvariantCulture);
        DateTimeOffset.ParseExact(written, "yyyy-MM-ddTHH:mm:ss.fffK", CultureInfo.InvariantCulture).ShouldBe(
            new DateTimeOffset(2026, 12, 1, 2, 25, 6, 320, TimeSpan.Zero));
    }
}
