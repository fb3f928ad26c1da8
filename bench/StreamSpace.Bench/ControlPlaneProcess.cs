using System.Diagnostics;

namespace StreamSpace.Bench;

/// <summary>The control plane as a real process (Release build), restartable, sampled through /proc.</summary>
/// <param name="embeddedAgent">Runs the in-process agent (process runtime: real Xvnc sessions), for the launch benchmark.</param>
internal sealed class ControlPlaneProcess(string exe, string database, int port, string dataFolder, int heartbeatSeconds, bool embeddedAgent = false) : IAsyncDisposable
{
    private Process? _process;

    public Uri BaseAddress => new($"http://127.0.0.1:{port}");
    public int Pid => _process?.Id ?? throw new InvalidOperationException("not started");

    /// <param name="waitUntilReady">False: return once the process runs (a storm measures readiness itself).</param>
    public async Task StartAsync(bool waitUntilReady = true)
    {
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["STREAMSPACE_URLS"] = $"http://127.0.0.1:{port}";
        psi.Environment["STREAMSPACE_DATABASE"] = database;
        psi.Environment["STREAMSPACE_DATA"] = dataFolder;
        psi.Environment["STREAMSPACE_ADMIN_PASSWORD"] = Bench.AdminPassword;
        psi.Environment["STREAMSPACE_EMBEDDED_AGENT"] = embeddedAgent ? "true" : "false";
        psi.Environment["STREAMSPACE_HEARTBEAT_SECONDS"] = heartbeatSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        // The creation benchmark signs in its 32 users from one address: above the per-client login limit.
        psi.Environment["StreamSpace__LoginAttemptsPerClientPerMinute"] = "100000";
        // Experiments on the control plane alone: BENCH_CP_<NAME>=<value> in the bench's environment is <NAME>=<value> in
        // the control plane's (e.g. BENCH_CP_DOTNET_gcServer=0), leaving the load generator in this process as it is.
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
            if (e.Key is string key && key.StartsWith("BENCH_CP_", StringComparison.Ordinal) && key.Length > "BENCH_CP_".Length)
            {
                psi.Environment[key["BENCH_CP_".Length..]] = e.Value as string;
                Console.WriteLine($"   control plane started with {key["BENCH_CP_".Length..]}={e.Value}");
            }
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null && e.Data.Contains("\"Error\"", StringComparison.Ordinal)) Console.Error.WriteLine("  [cp] " + e.Data[..Math.Min(300, e.Data.Length)]); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        if (!waitUntilReady) return;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                if ((await http.GetAsync(new Uri(BaseAddress, "/readyz"))).IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            if (_process.HasExited) throw new InvalidOperationException("control plane exited during start-up");
            await Task.Delay(100);
        }
        throw new TimeoutException("control plane not ready within 60 s");
    }

    public async Task KillAsync()
    {
        if (_process is null || _process.HasExited) return;
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
    }
}

/// <summary>CPU time and resident memory of a process, from /proc.</summary>
internal static class ProcStats
{
    private static readonly double TicksPerSecond = 100.0; // USER_HZ on Linux

    public static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // After the command name: field 14 (utime) and 15 (stime) are at index 11 and 12.
        return (long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) / TicksPerSecond;
    }

    /// <summary>CPU seconds of every process whose command name is <paramref name="comm"/> (e.g. all PostgreSQL backends).</summary>
    public static double CpuSecondsOfAll(string comm)
    {
        var total = 0.0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                if (File.ReadAllText($"/proc/{pid}/comm").Trim() == comm) total += CpuSeconds(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return total;
    }

    public static double RssMiB(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
        return 0;
    }
}
