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
    // A YAML "command: |" block ends in a newline; words end at any whitespace.
    [InlineData("xterm\n", "xterm")]
    [InlineData("xterm\n-fa Mono\n", "xterm")]
    [InlineData("\txterm\r\n", "xterm")]
    [InlineData("exec\nxterm", "xterm")]
    // Words the shell still rewrites are not looked up as written: the shell decides, and says so when it cannot.
    [InlineData("\"/opt/My App/run\" --flag", null)]
    [InlineData("'/opt/My App/run'", null)]
    [InlineData("/opt/My\\ App/run", null)]
    [InlineData("~/bin/app", null)]
    [InlineData("# start the editor\nxterm", null)]
    [InlineData("#!/bin/sh\nxterm", null)]
    public void The_program_of_a_plain_command_line_is_its_first_word(string command, string? expected) =>
        ProcessRuntime.ProgramOf(command).ShouldBe(expected);
}
