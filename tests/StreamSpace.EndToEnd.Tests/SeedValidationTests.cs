using System.Diagnostics;
using Dapper;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// The seed's validation report as an automated test, with real processes only: control plane, agent,
/// Xvnc + xterm sessions, on PostgreSQL and on SQLite. This is the scenario where the system we
/// re-implement failed in production (status drift, reconnect race, lost sessions).
/// </summary>
public abstract class SeedValidationTests(DatabaseKind kind)
{
    [Fact]
    public async Task Agent_online_sessions_survive_agent_crash_and_are_adopted_after_restart()
    {
        await using var platform = await Platform.StartAsync(kind, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();

        // 1. A fresh agent process is online within 2 s, in the API and in the agents table.
        var agent = await platform.AddAgentAsync("agent-seed", "process", maxSessions: 10, start: false);
        var sw = Stopwatch.StartNew();
        agent.Start();
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-seed") == "online", TimeSpan.FromSeconds(10), "agent online in API");
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "agent online in the API within 2 s of starting");
        (await platform.AgentStatusInDbAsync("agent-seed")).ShouldBe("online");
        await using (var conn = await platform.OpenDbAsync())
        {
            var row = await conn.QuerySingleAsync<(string Status, DateTimeOffset LastHeartbeat)>(
                "SELECT status, last_heartbeat FROM agents WHERE agent_id = 'agent-seed'");
            row.Status.ShouldBe("online");
            (DateTimeOffset.UtcNow - row.LastHeartbeat).ShouldBeLessThan(TimeSpan.FromSeconds(5));
        }

        // 2. Five sessions through the API (no manual SQL) reach running.
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
            ids.Add((await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!);
        foreach (var id in ids) await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));
        var xvncBefore = XvncPids(agent.StateFolder);
        xvncBefore.Count.ShouldBe(5);

        // 3. SIGKILL the agent: offline within the bound, sessions keep running.
        await agent.KillAsync();
        var offlineAfter = await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-seed") == "offline", TimeSpan.FromSeconds(10), "agent offline");
        offlineAfter.ShouldBeLessThan(TimeSpan.FromSeconds(2));
        (await platform.AgentStatusInDbAsync("agent-seed")).ShouldBe("offline");
        XvncPids(agent.StateFolder).ShouldBe(xvncBefore, "session processes outlive the agent");

        // 4. Restart: online within 2 s, the same 5 sessions adopted and running.
        sw.Restart();
        agent.Start();
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-seed") == "online", TimeSpan.FromSeconds(10), "agent back online");
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "restarted agent online within 2 s");
        await Task.Delay(TimeSpan.FromSeconds(1)); // let reconciliation of the hello's inventory finish
        foreach (var id in ids) (await admin.SessionStateAsync(id)).ShouldBe("running");
        XvncPids(agent.StateFolder).ShouldBe(xvncBefore, "the same processes, adopted, not restarted");

        // 5. A new session can still be created (by another user: admin's quota of 5 is used).
        await admin.CreateUserAsync("bob", "bob-password-1");
        var bob = await platform.ClientForAsync("bob", "bob-password-1");
        var bobs = (await bob.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await bob.WaitForSessionStateAsync(bobs, "running", TimeSpan.FromSeconds(60));
    }

    /// <summary>Xvnc processes of an agent's sessions: their working directory is a home under its state folder.</summary>
    internal static List<int> XvncPids(string stateFolder)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var cmd = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (cmd.Length > 0 && cmd[0].EndsWith("Xvnc", StringComparison.Ordinal)
                    && new DirectoryInfo(Path.Combine(dir, "cwd")).LinkTarget is { } cwd && cwd.StartsWith(stateFolder, StringComparison.Ordinal))
                    pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        pids.Sort();
        return pids;
    }
}

public sealed class SeedValidationTests_Postgres() : SeedValidationTests(DatabaseKind.Postgres);
public sealed class SeedValidationTests_Sqlite() : SeedValidationTests(DatabaseKind.Sqlite);
