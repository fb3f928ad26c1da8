using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// Hibernate and wake with real processes: a session whose app counts into a file in its home is frozen
/// (the counter stops and its processes burn no CPU), a viewer is told it is hibernated, and after wake the
/// count goes on from where it stopped — the same processes, not a restart.
/// </summary>
public sealed class HibernateTests
{
    private const string Template = "e2e-counter";

    // Writes a growing number into $HOME/counter twenty times a second.
    private const string CounterCommand = "sh -c 'i=0; while :; do i=$((i+1)); echo $i > \"$HOME/counter\"; sleep 0.05; done'";

    [Fact]
    public async Task Hibernate_freezes_the_session_processes_and_wake_continues_them()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        await CreateCounterTemplateAsync(admin);
        var agent = await platform.AddAgentAsync("agent-hibernate", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-hibernate") == "online", TimeSpan.FromSeconds(10), "agent online");
        var id = (await admin.CreateSessionAsync(Template)).GetProperty("id").GetString()!;
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));

        var home = Path.Combine(agent.StateFolder, "sessions", id, "home");
        var counterFile = Path.Combine(home, "counter");
        await Platform.WaitUntilAsync(() => Task.FromResult(ReadCounter(counterFile) > 5), TimeSpan.FromSeconds(20), "the counter runs");
        var first = ReadCounter(counterFile);
        await Platform.WaitUntilAsync(() => Task.FromResult(ReadCounter(counterFile) > first), TimeSpan.FromSeconds(5), "the counter advances");

        using (var hibernate = await admin.PostAsync($"/api/v1/sessions/{id}/hibernate", null))
            hibernate.StatusCode.ShouldBe(HttpStatusCode.Accepted, await hibernate.Content.ReadAsStringAsync());
        await admin.WaitForSessionStateAsync(id, "hibernated", TimeSpan.FromSeconds(30));

        // Frozen: neither the counter nor the CPU time of any process working in the session's home moves.
        var pids = ProcessesWorkingIn(home);
        pids.ShouldNotBeEmpty("the session's processes work in its home");
        var cpuBefore = CpuTicks(pids);
        var frozenAt = ReadCounter(counterFile);
        await Task.Delay(TimeSpan.FromSeconds(2), TestContext.Current.CancellationToken);
        ReadCounter(counterFile).ShouldBe(frozenAt, "the counter must not change while hibernated");
        var cpuAfter = CpuTicks(pids);
        (cpuAfter - cpuBefore).ShouldBe(0L, $"processes {string.Join(',', pids)} used CPU while hibernated");
        foreach (var pid in pids) StoppedOrHeld(pid).ShouldBeTrue($"pid {pid} is stopped (state {ProcessState(pid)})");

        // A viewer of a hibernated session is told why it cannot connect.
        using (var ticket = await admin.PostAsync($"/api/v1/sessions/{id}/viewer-ticket", null))
        {
            var body = await ticket.Content.ReadAsStringAsync();
            ticket.StatusCode.ShouldBe(HttpStatusCode.Conflict, body);
            var error = JsonDocument.Parse(body).RootElement;
            error.GetProperty("error").GetString().ShouldNotBeNullOrWhiteSpace();
            error.GetProperty("message").GetString()!.ShouldContain("hibernated");
        }

        using (var wake = await admin.PostAsync($"/api/v1/sessions/{id}/wake", null))
            wake.StatusCode.ShouldBe(HttpStatusCode.Accepted, await wake.Content.ReadAsStringAsync());
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(30));

        // Continued, not restarted: the count never goes back, and it advances again. The counter's shell, woken, may be
        // between truncating the file and writing the next number: read again until a number is there.
        var afterWake = -1L;
        await Platform.WaitUntilAsync(() => Task.FromResult((afterWake = ReadCounter(counterFile)) >= 0), TimeSpan.FromSeconds(5), "the counter file to hold a number");
        afterWake.ShouldBeGreaterThanOrEqualTo(frozenAt);
        await Platform.WaitUntilAsync(() => Task.FromResult(ReadCounter(counterFile) > afterWake + 5), TimeSpan.FromSeconds(10), "the counter advances after wake");
        ReadCounter(counterFile).ShouldBeGreaterThan(frozenAt);
        CpuTicks(pids).ShouldBeGreaterThanOrEqualTo(cpuAfter);
        foreach (var pid in pids.Where(p => File.Exists($"/proc/{p}/stat"))) ProcessState(pid).ShouldNotBe('T', $"pid {pid} runs again");
    }

    [Fact]
    public async Task An_open_viewer_is_told_the_session_is_being_hibernated_instead_of_watching_a_frozen_desktop()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        await platform.AddAgentAsync("agent-hibernate-viewer", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-hibernate-viewer") == "online", TimeSpan.FromSeconds(10), "agent online");
        var id = (await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));

        using var ticket = await admin.PostAsync($"/api/v1/sessions/{id}/viewer-ticket", null);
        var url = JsonDocument.Parse(await ticket.Content.ReadAsStringAsync()).RootElement.GetProperty("url").GetString()!;
        using var viewer = new ClientWebSocket();
        viewer.Options.AddSubProtocol("binary");
        await viewer.ConnectAsync(new Uri($"ws://127.0.0.1:{platform.Port}{url}"), TestContext.Current.CancellationToken);
        var buffer = new byte[64 * 1024];
        using (var banner = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            var first = await viewer.ReceiveAsync(buffer.AsMemory(), banner.Token);
            Encoding.ASCII.GetString(buffer, 0, first.Count).ShouldStartWith("RFB 003.00", Case.Sensitive, "the stream is live");
        }

        using (var hibernate = await admin.PostAsync($"/api/v1/sessions/{id}/hibernate", null))
            hibernate.StatusCode.ShouldBe(HttpStatusCode.Accepted, await hibernate.Content.ReadAsStringAsync());
        // Agent → control plane → viewer: the stream ends with the agent's reason, within a few seconds of the request.
        using (var closing = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            while ((await viewer.ReceiveAsync(buffer.AsMemory(), closing.Token)).MessageType != WebSocketMessageType.Close) { }
        }
        viewer.CloseStatus.ShouldBe(WebSocketCloseStatus.EndpointUnavailable);
        viewer.CloseStatusDescription.ShouldBe("The session is being hibernated.");
        await admin.WaitForSessionStateAsync(id, "hibernated", TimeSpan.FromSeconds(30));
    }

    private static async Task CreateCounterTemplateAsync(HttpClient admin)
    {
        using var response = await admin.PostAsJsonAsync($"/api/v1/templates/{Template}", new
        {
            displayName = "Counter",
            description = "Counts into a file in its home (hibernate test).",
            category = "Development",
            icon = "terminal",
            defaultResources = new { cpu = "250m", memory = "256Mi" },
            stream = new { protocol = "vnc", port = 5900 },
            home = new { mountPath = "/home/user" },
            env = new Dictionary<string, string>(),
            process = new { command = CounterCommand },
        });
        response.StatusCode.ShouldBe(HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The counter's value; -1 while the file is missing or caught between truncate and write.</summary>
    private static long ReadCounter(string file)
    {
        try
        {
            return long.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : -1;
        }
        catch (FileNotFoundException) { return -1; }
        catch (DirectoryNotFoundException) { return -1; }
    }

    private static List<int> ProcessesWorkingIn(string folder)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                if (new DirectoryInfo(Path.Combine(dir, "cwd")).LinkTarget is { } cwd && cwd.TrimEnd('/') == folder.TrimEnd('/')) pids.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return pids;
    }

    /// <summary>utime + stime (clock ticks) summed over the processes that still exist.</summary>
    private static long CpuTicks(IEnumerable<int> pids)
    {
        long total = 0;
        foreach (var pid in pids)
        {
            if (StatFields(pid) is not { } f) continue;
            // Fields after "pid (comm) ": state is [0], utime is field 14 → [11], stime 15 → [12].
            total += long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
        }
        return total;
    }

    private static char ProcessState(int pid) => StatFields(pid) is { } f ? f[0][0] : '?';

    /// <summary>
    /// Stopped, or a shell held in the kernel (D) by a vfork child that was stopped before its exec: it cannot run
    /// until the group is continued (the agent counts it as stopped too, see ProcFs.IsHeld).
    /// </summary>
    private static bool StoppedOrHeld(int pid) => ProcessState(pid) switch
    {
        'T' or 't' => true,
        'D' => Directory.EnumerateDirectories("/proc").Any(dir =>
            int.TryParse(Path.GetFileName(dir), out var child) && StatFields(child) is { } f
            && f[1] == pid.ToString(CultureInfo.InvariantCulture) && f[0][0] is 'T' or 't'),
        _ => false,
    };

    private static string[]? StatFields(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (IOException) { return null; }
    }
}
