using StreamSpace.Agent.Runtimes.Process;

namespace StreamSpace.Agent.Tests;

public sealed class ProgramOfTests
{
    [Theory]
    [InlineData("xterm", "xterm")]
    [InlineData("firefox-esr --no-remote --new-instance", "firefox-esr")]
    [InlineData("  /usr/bin/xterm -fa Mono", "/usr/bin/xterm")]
    [InlineData("FOO=1 xterm", null)]
    [InlineData("$HOME/bin/app", null)]
    [InlineData("(cd /tmp && xterm)", null)]
    [InlineData("exec xterm -fa Mono", "xterm")]
    [InlineData("exec  firefox-esr", "firefox-esr")]
    [InlineData("cd /tmp && xterm", null)]
    [InlineData("ulimit -c 0; xterm", null)]
    public void The_program_of_a_plain_command_line_is_its_first_word(string command, string? expected) =>
        ProcessRuntime.ProgramOf(command).ShouldBe(expected);
}
