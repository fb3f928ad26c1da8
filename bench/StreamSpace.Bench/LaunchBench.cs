using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;

namespace StreamSpace.Bench;

/// <summary>
/// Session launch (design §10: "raw Xvnc start for session launch"): how long from <c>POST /api/v1/sessions</c> until
/// the session is <c>running</c> (its Xvnc answers RFB and its app was started), on the embedded agent with the process
/// runtime, against starting a bare Xvnc by hand until it answers RFB on its Unix socket, alternating in the same run.
/// Ours includes the HTTP request, the create transaction, the start command to the agent and back, the session's
/// account, X cookie, cgroups and the app's start.
/// </summary>
internal static class LaunchBench
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    public static async Task RunAsync(string pg, string exe, int launches)
    {
        Console.WriteLine($"== session launch: {launches} xterm sessions (embedded agent, process runtime) against {launches} bare Xvnc starts, alternating");
        await using var env = await BenchDatabase.CreateAsync(pg);
        // A temporary folder is 0700; the sessions' accounts must pass through it to their state folder (the agent refuses
        // to start sessions otherwise and says so).
        if (OperatingSystem.IsLinux())
            File.SetUnixFileMode(env.DataFolder, File.GetUnixFileMode(env.DataFolder) | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        await using var cp = new ControlPlaneProcess(exe, env.Setting, Bench.FreePort(), env.DataFolder, heartbeatSeconds: 10, embeddedAgent: true);
        await cp.StartAsync();
        using var http = new HttpClient { BaseAddress = cp.BaseAddress, Timeout = Limit };
        using (var login = await http.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password = Bench.AdminPassword }))
        {
            login.EnsureSuccessStatusCode();
            var token = (await login.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
            http.DefaultRequestHeaders.Authorization = new("Bearer", token);
        }
        // The embedded agent registers itself at start-up: wait until it is online, and launch one session untimed (the
        // first creates the owner's Unix account and JIT-compiles the path).
        var wait = Stopwatch.StartNew();
        while ((await http.GetFromJsonAsync<JsonElement>("/api/v1/agents")).EnumerateArray().All(a => a.GetProperty("status").GetString() != "online"))
        {
            if (wait.Elapsed > Limit) throw new TimeoutException("the embedded agent did not come online");
            await Task.Delay(100);
        }
        await LaunchOnceAsync(http);

        var ours = new List<double>();
        var raw = new List<double>();
        for (var i = 0; i < launches; i++)
        {
            raw.Add(await RawXvncOnceAsync());
            ours.Add(await LaunchOnceAsync(http));
        }
        ours.Sort();
        raw.Sort();
        static double P(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
        Console.WriteLine($"   bare Xvnc until it answers RFB: p50 {P(raw, 0.5):0} ms, p90 {P(raw, 0.9):0} ms");
        Console.WriteLine($"   StreamSpace POST → running:     p50 {P(ours, 0.5):0} ms, p90 {P(ours, 0.9):0} ms → {P(ours, 0.5) / P(raw, 0.5):0.00} × bare Xvnc (p50)");
        Console.WriteLine($"   all ours (ms): {string.Join(' ', ours.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}");
    }

    /// <summary>Creates an xterm session, waits for <c>running</c>, returns the milliseconds, and deletes it again.</summary>
    private static async Task<double> LaunchOnceAsync(HttpClient http)
    {
        var clock = Stopwatch.StartNew();
        using var created = await http.PostAsJsonAsync("/api/v1/sessions", new { template = "xterm" });
        if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"create refused: {(int)created.StatusCode} {await created.Content.ReadAsStringAsync()}");
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        double took;
        while (true)
        {
            var session = await http.GetFromJsonAsync<JsonElement>($"/api/v1/sessions/{id}");
            var state = session.GetProperty("state").GetString();
            if (state == "running") { took = clock.Elapsed.TotalMilliseconds; break; }
            if (state == "failed") throw new InvalidOperationException($"session {id} failed: {session.GetProperty("stateReason")}");
            if (clock.Elapsed > Limit) throw new TimeoutException($"session {id} not running after {Limit.TotalSeconds} s (state {state})");
            await Task.Delay(Poll);
        }
        (await http.DeleteAsync($"/api/v1/sessions/{id}")).EnsureSuccessStatusCode();
        var gone = Stopwatch.StartNew();
        while ((await http.GetFromJsonAsync<JsonElement>($"/api/v1/sessions/{id}")).GetProperty("state").GetString() != "terminated" && gone.Elapsed < Limit)
            await Task.Delay(50);
        return took;
    }

    /// <summary>Starts Xvnc as the process runtime does (Unix socket only) and times it until it sends its RFB banner.</summary>
    private static async Task<double> RawXvncOnceAsync()
    {
        var display = Enumerable.Range(200, 100).First(d => !File.Exists($"/tmp/.X11-unix/X{d}") && !File.Exists($"/tmp/.X{d}-lock"));
        var socketPath = Path.Combine(Path.GetTempPath(), $"streamspace-launch-bench-{Environment.ProcessId}.sock");
        File.Delete(socketPath);
        var psi = new ProcessStartInfo("Xvnc") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in new[] { $":{display}", "-rfbunixpath", socketPath, "-rfbunixmode", "0600", "-rfbport", "-1", "-SecurityTypes", "None",
                     "-nolisten", "tcp", "-geometry", "1280x800", "-depth", "24" })
            psi.ArgumentList.Add(arg);
        var clock = Stopwatch.StartNew();
        using var xvnc = Process.Start(psi)!;
        xvnc.OutputDataReceived += (_, _) => { };
        xvnc.ErrorDataReceived += (_, _) => { };
        xvnc.BeginOutputReadLine();
        xvnc.BeginErrorReadLine();
        try
        {
            while (true)
            {
                if (await AnswersRfbAsync(socketPath)) return clock.Elapsed.TotalMilliseconds;
                if (xvnc.HasExited) throw new InvalidOperationException($"Xvnc :{display} exited with {xvnc.ExitCode}");
                if (clock.Elapsed > Limit) throw new TimeoutException("Xvnc did not answer");
                await Task.Delay(Poll);
            }
        }
        finally
        {
            // SIGTERM, so Xvnc removes its /tmp/.X<n>-lock and X socket (a SIGKILL left one pair per launch behind).
            using (var term = Process.Start("kill", ["-TERM", xvnc.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await term.WaitForExitAsync();
            using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            {
                try { await xvnc.WaitForExitAsync(grace.Token); }
                catch (OperationCanceledException) { xvnc.Kill(); await xvnc.WaitForExitAsync(); }
            }
            File.Delete(socketPath);
        }
    }

    private static async Task<bool> AnswersRfbAsync(string socketPath)
    {
        if (!File.Exists(socketPath)) return false;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
            var banner = new byte[12];
            var read = 0;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            while (read < banner.Length)
            {
                var n = await socket.ReceiveAsync(banner.AsMemory(read), timeout.Token);
                if (n == 0) return false;
                read += n;
            }
            return banner.AsSpan().StartsWith("RFB "u8);
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
