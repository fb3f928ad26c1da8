using System.Diagnostics;
using System.Text;

namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A real child process (control plane or agent) with its output captured to a log file in the test
/// artifacts, killable with SIGKILL (a crash) or SIGTERM (a graceful stop).
/// </summary>
public sealed class ManagedProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly StringBuilder _recent = new();
    private readonly Lock _gate = new();

    private ManagedProcess(Process process, StreamWriter log, string name)
    {
        _process = process;
        _log = log;
        Name = name;
    }

    public string Name { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Until the process exited and its output was read to the end.</summary>
    public Task WaitForExitAsync(CancellationToken ct) => _process.WaitForExitAsync(ct);

    public static ManagedProcess Start(string name, string exe, IDictionary<string, string?> env, params string[] args) =>
        Start(name, exe, env, Path.GetDirectoryName(exe)!, args);

    public static ManagedProcess Start(string name, string exe, IDictionary<string, string?> env, string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Start from a clean StreamSpace environment: only what the test sets.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("STREAMSPACE_", StringComparison.Ordinal) || k.StartsWith("StreamSpace__", StringComparison.Ordinal)).ToList())
            psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (k, v) in env) psi.Environment[k] = v;

        var logPath = Path.Combine(Paths.Artifacts, $"{name}-{DateTime.UtcNow:HHmmss.fff}.log");
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var managed = new ManagedProcess(process, log, name);
        process.OutputDataReceived += (_, e) => managed.Append(e.Data);
        process.ErrorDataReceived += (_, e) => managed.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return managed;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_gate)
        {
            _log.WriteLine(line);
            _recent.AppendLine(line);
            if (_recent.Length > 200_000) _recent.Remove(0, 100_000);
        }
    }

    public string Output
    {
        get { lock (_gate) return _recent.ToString(); }
    }

    /// <summary>SIGKILL: the process gets no chance to clean up (a crash).</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: false);
        await _process.WaitForExitAsync();
    }

    /// <summary>Sends <paramref name="signal"/> (e.g. <see cref="Posix.SIGINT"/>, Ctrl-C) and returns at once.</summary>
    public void Signal(int signal)
    {
        if (!_process.HasExited) _ = Posix.Kill(_process.Id, signal);
    }

    /// <summary>SIGTERM and wait for a graceful exit (SIGKILL after the timeout).</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (_process.HasExited) return;
        _ = Posix.Kill(_process.Id, Posix.SIGTERM);
        using var cts = new CancellationTokenSource(timeout);
        try { await _process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { await KillAsync(); }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
        lock (_gate) _log.Dispose();
    }
}

internal static partial class Posix
{
    public const int SIGINT = 2;
    public const int SIGTERM = 15;
    public const int SIGKILL = 9;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);
}
