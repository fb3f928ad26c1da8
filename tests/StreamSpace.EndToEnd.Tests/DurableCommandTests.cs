using System.Net;
using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// Invariant 2 with real processes: commands issued while the agent is unreachable are executed
/// exactly once when it returns, and a control-plane crash loses no command or session state.
/// </summary>
public sealed class DurableCommandTests
{
    [Fact]
    public async Task Create_and_terminate_issued_while_the_agent_is_down_run_exactly_once_after_it_returns()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, heartbeatSeconds: 3);
        var admin = await platform.AdminAsync();
        var agent = await platform.AddAgentAsync("agent-durable", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-durable") == "online", TimeSpan.FromSeconds(10), "agent online");

        var first = (await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await admin.WaitForSessionStateAsync(first, "running", TimeSpan.FromSeconds(60));

        // Freeze the agent: its socket stays open (still online until 3 heartbeats are missed), so the
        // create is placed on it and its command is sent, but nothing is executed or acked.
        _ = Posix.Kill(agent.Process!.Pid, 19 /* SIGSTOP */);
        var second = (await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await Task.Delay(500);
        await agent.KillAsync(); // SIGKILL while stopped: the command was never acknowledged
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-durable") == "offline", TimeSpan.FromSeconds(10), "agent offline");

        // Terminate while the agent is down: accepted, waits in the outbox.
        using (var del = await admin.DeleteAsync($"/api/v1/sessions/{first}"))
            del.StatusCode.ShouldBe(HttpStatusCode.Accepted);
        (await admin.SessionStateAsync(first)).ShouldBe("terminating");

        agent.Start();
        await admin.WaitForSessionStateAsync(first, "terminated", TimeSpan.FromSeconds(60));
        await admin.WaitForSessionStateAsync(second, "running", TimeSpan.FromSeconds(60));

        // Exactly once: one Xvnc for the second session, none for the first, one final state per command.
        var xvnc = SeedValidationTests.XvncPids(agent.StateFolder);
        xvnc.Count.ShouldBe(1);
        await using var conn = await platform.OpenDbAsync();
        var commands = (await conn.QueryAsync<(string SessionId, string Type, string State)>(
            "SELECT session_id, type, state FROM agent_commands ORDER BY created_at")).ToList();
        commands.Count(c => c.SessionId == second && c.Type == "session.start").ShouldBe(1);
        commands.Single(c => c.SessionId == second && c.Type == "session.start").State.ShouldBe("succeeded");
        commands.Single(c => c.SessionId == first && c.Type == "session.stop").State.ShouldBe("succeeded");
    }

    [Fact]
    public async Task Control_plane_crash_loses_no_session_or_command_and_agents_return_within_5_s()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        var agent = await platform.AddAgentAsync("agent-cpcrash", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-cpcrash") == "online", TimeSpan.FromSeconds(10), "agent online");
        var running = (await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await admin.WaitForSessionStateAsync(running, "running", TimeSpan.FromSeconds(60));

        await platform.ControlPlane!.KillAsync();
        await platform.StartControlPlaneAsync();
        admin = await platform.AdminAsync();
        var back = await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-cpcrash") == "online", TimeSpan.FromSeconds(30), "agent back after control-plane restart");
        back.ShouldBeLessThan(TimeSpan.FromSeconds(5));
        (await admin.SessionStateAsync(running)).ShouldBe("running");
        SeedValidationTests.XvncPids(agent.StateFolder).Count.ShouldBe(1);

        // The platform still works: a new command goes through.
        using (var del = await admin.DeleteAsync($"/api/v1/sessions/{running}"))
            del.StatusCode.ShouldBe(HttpStatusCode.Accepted);
        await admin.WaitForSessionStateAsync(running, "terminated", TimeSpan.FromSeconds(30));
    }
}
