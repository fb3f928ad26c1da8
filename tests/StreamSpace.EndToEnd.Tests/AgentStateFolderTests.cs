using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// A standalone agent process started as root the way the README shows (from a checkout, no STREAMSPACE_AGENT_STATE)
/// where that checkout is under a mode-700 folder, as /root is: its default ./data/agent-&lt;id&gt; could never start a
/// session, so the state goes to a folder of its own, said in a warning.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class AgentStateFolderTests
{
    [Fact]
    public async Task A_root_agent_started_in_a_folder_the_session_accounts_cannot_enter_keeps_its_state_elsewhere_and_says_so()
    {
        Environment.IsPrivilegedProcess.ShouldBeTrue("the session accounts only exist under a root agent");
        var root = Directory.CreateTempSubdirectory("streamspace-e2e-agent-state-").FullName;
        try
        {
            File.SetUnixFileMode(root, (UnixFileMode)Convert.ToInt32("755", 8));
            var home = Directory.CreateDirectory(Path.Combine(root, "root-home")).FullName;
            File.SetUnixFileMode(home, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var checkout = Directory.CreateDirectory(Path.Combine(home, "streamspace")).FullName;
            var shared = Directory.CreateDirectory(Path.Combine(root, "var-lib-streamspace")).FullName;

            await using var agent = ManagedProcess.Start("agent-state-moved", Paths.AgentExe, new Dictionary<string, string?>
            {
                // Nothing listens there: the agent keeps retrying, which is all this test needs of it.
                ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:1",
                ["STREAMSPACE_AGENT_ID"] = "worker-7",
                ["STREAMSPACE_AGENT_TOKEN"] = "ssa_unused",
                ["StreamSpace__Agent__SharedStateRoot"] = shared,
            }, checkout);
            // The warning is logged as the agent starts, the folder made by its worker just after: wait for both.
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (!(agent.Output.Contains("The agent keeps its state", StringComparison.Ordinal) && Directory.EnumerateDirectories(shared).Any())
                   && !agent.HasExited && DateTime.UtcNow < until)
                await Task.Delay(100, TestContext.Current.CancellationToken);

            agent.Output.ShouldContain($"cannot pass through {home} (mode 700) to reach {Path.Combine(checkout, "data", "agent-worker-7")}");
            var state = Directory.GetDirectories(shared).ShouldHaveSingleItem();
            Path.GetFileName(state).ShouldStartWith("agent-worker-7-");
            Directory.Exists(Path.Combine(checkout, "data")).ShouldBeFalse("the state went to the checkout after all");
            await agent.KillAsync();
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task An_agent_whose_state_folder_cannot_be_made_ends_at_once_with_one_plain_line()
    {
        using var scratch = new ScratchFolder("streamspace-e2e-agent-state-file-");
        var state = await scratch.UnusableStateFolderAsync(TestContext.Current.CancellationToken);
        await using var agent = ManagedProcess.Start("agent-state-file", Paths.AgentExe, new Dictionary<string, string?>
        {
            ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:1",
            ["STREAMSPACE_AGENT_ID"] = "worker-8",
            ["STREAMSPACE_AGENT_TOKEN"] = "ssa_unused",
            ["STREAMSPACE_AGENT_STATE"] = state,
        }, scratch.Path);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await agent.WaitForExitAsync(timeout.Token);

        agent.ExitCode.ShouldBe(2, agent.Output);
        agent.Output.Trim().ShouldStartWith($"invalid agent configuration: the state folder {state} cannot be used (");
        agent.Output.Trim().ShouldEndWith("STREAMSPACE_AGENT_STATE sets it");
        agent.Output.Trim().ShouldNotContain("\n");
    }
    [Fact]
    public async Task A_second_agent_on_a_state_folder_in_use_ends_at_once_saying_which_folder()
    {
        using var scratch = new ScratchFolder("streamspace-e2e-agent-state-twice-");
        var state = scratch.Path;
        var settings = new Dictionary<string, string?>
        {
            // Nothing listens there: the first agent keeps retrying while it holds the folder.
            ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:1",
            ["STREAMSPACE_AGENT_ID"] = "worker-9",
            ["STREAMSPACE_AGENT_TOKEN"] = "ssa_unused",
            ["STREAMSPACE_AGENT_STATE"] = state,
        };
        await using var first = ManagedProcess.Start("agent-state-first", Paths.AgentExe, settings, state);
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!File.Exists(Path.Combine(state, "agent.lock")) && !first.HasExited && DateTime.UtcNow < until)
            await Task.Delay(100, TestContext.Current.CancellationToken);
        first.HasExited.ShouldBeFalse(first.Output);

        await using var second = ManagedProcess.Start("agent-state-second", Paths.AgentExe, settings, state);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await second.WaitForExitAsync(timeout.Token);

        second.ExitCode.ShouldBe(2, second.Output);
        second.Output.ShouldContain($"the agent state folder {state} is in use by another agent");
        second.Output.ShouldNotContain("Unhandled exception");
        first.HasExited.ShouldBeFalse("the agent that held the folder was disturbed");
        await first.KillAsync();
    }

    [Fact]
    public async Task A_non_root_agent_removes_the_read_only_tree_an_old_ended_session_left_and_starts()
    {
        Environment.IsPrivilegedProcess.ShouldBeTrue("the test hands a state folder to an unprivileged account and runs the agent as that account");
        using var scratch = new ScratchFolder("streamspace-e2e-agent-prune-");
        File.SetUnixFileMode(scratch.Path, (UnixFileMode)Convert.ToInt32("755", 8));
        var state = Path.Combine(scratch.Path, "state");
        // A session that ended two days ago left Go's module cache in its temporary home: folders of mode 555, which the
        // agent's account (the sessions' account too, without root) cannot empty as they are.
        var ended = Path.Combine(state, "sessions", "alice-go-4f2a9c");
        var module = Path.Combine(ended, "home", "go", "pkg", "mod", "example.com", "m@v1.0.0");
        Directory.CreateDirectory(module);
        await File.WriteAllTextAsync(Path.Combine(module, "go.mod"), "module example.com/m\n", TestContext.Current.CancellationToken);
        Directory.CreateDirectory(Path.Combine(ended, "run"));
        await File.WriteAllTextAsync(Path.Combine(ended, "run", "session.log"), "the app exited\n", TestContext.Current.CancellationToken);
        (await RunAsync("/bin/chown", "-R", "streamspace:", state)).ShouldBe(0);
        (await RunAsync("/bin/chmod", "-R", "a-w", Path.Combine(ended, "home", "go"))).ShouldBe(0);
        Directory.SetLastWriteTimeUtc(ended, DateTime.UtcNow.AddDays(-2));

        await using var agent = ManagedProcess.Start("agent-non-root-prune", "/usr/bin/setpriv", new Dictionary<string, string?>
        {
            // Nothing listens there: the agent keeps retrying, which is all this test needs of it.
            ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:1",
            ["STREAMSPACE_AGENT_ID"] = "worker-10",
            ["STREAMSPACE_AGENT_TOKEN"] = "ssa_unused",
            ["STREAMSPACE_AGENT_STATE"] = state,
            ["HOME"] = scratch.Path,
        }, scratch.Path, "--reuid=streamspace", "--regid=streamspace", "--clear-groups", "--", Paths.AgentExe);
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!agent.Output.Contains("connecting to", StringComparison.Ordinal) && !agent.HasExited && DateTime.UtcNow < until)
            await Task.Delay(100, TestContext.Current.CancellationToken);

        agent.HasExited.ShouldBeFalse(agent.Output);
        agent.Output.ShouldContain("connecting to");
        Directory.Exists(ended).ShouldBeFalse(agent.Output);
        await agent.KillAsync();
    }

    private static async Task<int> RunAsync(string program, params string[] arguments)
    {
        using var process = System.Diagnostics.Process.Start(program, arguments);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        return process.ExitCode;
    }
}
