using System.Collections.Concurrent;
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

    /// <summary>
    /// Invariant 2 under fire: a 201 means the session and its start command were committed. The control plane is
    /// SIGKILLed while eight clients create sessions back to back (several group-committed batches in flight); after its
    /// restart every answered session exists and runs, every committed one (answered or not: a batch can commit just
    /// before the crash cuts its answers) runs with exactly one start command, and the agent holds exactly those.
    /// The agent runs the simulated runtime: what is tested is the control plane's bookkeeping, and dozens of sessions
    /// start in an instant with it.
    /// </summary>
    [Fact]
    public async Task Control_plane_killed_in_a_burst_of_creates_keeps_every_answered_session_and_runs_every_committed_one()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        await platform.AddAgentAsync("agent-burst", "simulated", maxSessions: 1000);
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-burst") == "online", TimeSpan.FromSeconds(10), "agent online");
        var users = Enumerable.Range(1, 8).Select(i => $"burst{i}").ToList();
        foreach (var u in users) await admin.CreateUserAsync(u, "burst-password-1", maxSessions: 1000);
        var clients = new List<HttpClient>();
        foreach (var u in users) clients.Add(await platform.ClientForAsync(u, "burst-password-1"));

        var answered = new ConcurrentBag<string>();
        var refusals = new ConcurrentBag<string>();
        var enough = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var loops = clients.Select(client => Task.Run(async () =>
        {
            while (true)
            {
                try
                {
                    var (status, body) = await client.TryCreateSessionAsync("xterm");
                    if (status != HttpStatusCode.Created) { refusals.Add($"{(int)status} {body}"); return; }
                    answered.Add(body.GetProperty("id").GetString()!);
                    if (answered.Count >= 60) enough.TrySetResult();
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or System.Text.Json.JsonException)
                {
                    return; // the control plane is gone: the request may or may not have committed
                }
            }
        })).ToList();
        await enough.Task.WaitAsync(TimeSpan.FromSeconds(60));
        await platform.ControlPlane!.KillAsync();
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(60));
        refusals.ShouldBeEmpty();
        var beforeCrash = answered.ToHashSet(StringComparer.Ordinal);

        await platform.StartControlPlaneAsync();
        admin = await platform.AdminAsync();
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-burst") == "online", TimeSpan.FromSeconds(30), "agent back");
        await using var conn = await platform.OpenDbAsync();
        await Platform.WaitUntilAsync(async () => await conn.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM sessions WHERE username LIKE 'burst%' AND state <> 'running'") == 0,
            TimeSpan.FromSeconds(30), "every committed session running", 200);

        // Start commands whose results the crash cut off are sent again on the agent's reconnect, and its dedupe answers
        // them with the results it kept.
        try
        {
            await Platform.WaitUntilAsync(async () => await conn.ExecuteScalarAsync<long>(
                "SELECT count(*) FROM agent_commands WHERE session_id LIKE 'burst%' AND state <> 'succeeded'") == 0,
                TimeSpan.FromSeconds(30), "every start command succeeded", 200);
        }
        catch (TimeoutException ex)
        {
            // Which commands, in which state, and when they were last tried: what the next person needs to see.
            var open = await conn.QueryAsync<string>(
                "SELECT id || ' ' || type || ' ' || state || ' attempts=' || attempts || ' next=' || next_attempt_at || ' updated=' || updated_at FROM agent_commands WHERE session_id LIKE 'burst%' AND state <> 'succeeded' LIMIT 10");
            throw new TimeoutException($"{ex.Message}; still open (now {DateTimeOffset.UtcNow:O}): {string.Join("; ", open)}", ex);
        }
        var committed = (await conn.QueryAsync<string>("SELECT id FROM sessions WHERE username LIKE 'burst%'")).ToHashSet(StringComparer.Ordinal);
        beforeCrash.Except(committed).ShouldBeEmpty("answered 201 but not in the database");
        var starts = (await conn.QueryAsync<(string SessionId, long Count, bool AllSucceeded)>(
            "SELECT session_id, count(*), bool_and(state = 'succeeded') FROM agent_commands WHERE type = 'session.start' AND session_id LIKE 'burst%' GROUP BY session_id")).ToList();
        starts.Select(s => s.SessionId).ToHashSet(StringComparer.Ordinal).SetEquals(committed).ShouldBeTrue("one start command per committed session");
        starts.ShouldAllBe(s => s.Count == 1 && s.AllSucceeded);
        // The agent holds exactly the committed sessions (its heartbeat reports what its runtime has).
        await Platform.WaitUntilAsync(async () =>
            (await admin.GetJsonAsync("/api/v1/agents/agent-burst")).GetProperty("activeSessions").GetInt32() == committed.Count,
            TimeSpan.FromSeconds(10), $"the agent reporting {committed.Count} sessions", 200);
    }
}
