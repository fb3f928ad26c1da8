using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>
/// The control plane as a user runs it: its own process, published as <c>./run.sh</c> publishes it (the web assets in a
/// <c>wwwroot</c> beside the program) and started from another folder, on a loopback port, SQLite in a fresh data folder,
/// and the embedded local agent. (The build output, whose assets the runtime manifest maps from the project, hid that the
/// published program served every asset empty.)
/// </summary>
public class ControlPlaneProcess : IAsyncLifetime
{
    public const string AdminPassword = "journey-admin-password-1";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    private Process? _process;
    private readonly System.Text.StringBuilder _output = new();

    public Uri BaseAddress { get; private set; } = null!;
    public string DataFolder { get; } = Path.Combine(Path.GetTempPath(), "streamspace-journey", Guid.NewGuid().ToString("N"));

    /// <summary>What the process printed so far (attached to failures).</summary>
    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    /// <summary>
    /// The viewer streams of a session as the control plane's log tells them: how many connected through the agent
    /// so far, and how many of those are still open (not yet logged as ended).
    /// </summary>
    public (int Connected, int Open) Streams(string sessionId)
    {
        var connected = new HashSet<string>(StringComparer.Ordinal);
        var ended = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in Output.Split('\n'))
        {
            if (!line.StartsWith('{') || !line.Contains("\"StreamId\"", StringComparison.Ordinal)) continue;
            using var entry = JsonDocument.Parse(line);
            if (!entry.RootElement.TryGetProperty("State", out var state)
                || !state.TryGetProperty("{OriginalFormat}", out var format)
                || !state.TryGetProperty("StreamId", out var streamId)) continue;
            var id = streamId.GetString()!;
            if (format.GetString()!.StartsWith("Stream {StreamId} for session {SessionId} connected", StringComparison.Ordinal)
                && state.GetProperty("SessionId").GetString() == sessionId)
                connected.Add(id);
            else if (format.GetString()!.StartsWith("Stream {StreamId} ended", StringComparison.Ordinal))
                ended.Add(id);
        }
        return (connected.Count, connected.Count(id => !ended.Contains(id)));
    }

    /// <summary>Settings a variant of the control plane adds (e.g. a short sign-in lifetime).</summary>
    protected virtual IReadOnlyDictionary<string, string> ExtraEnvironment { get; } = new Dictionary<string, string>();

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(DataFolder);
        var port = FreeLoopbackPort();
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        var dll = await Published.Value;
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { dll },
            // Not the program's folder: run.sh starts it from the checkout.
            WorkingDirectory = DataFolder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["STREAMSPACE_URLS"] = BaseAddress.ToString().TrimEnd('/');
        start.Environment["STREAMSPACE_DATA"] = DataFolder;
        start.Environment["STREAMSPACE_ADMIN_PASSWORD"] = AdminPassword;
        start.Environment["STREAMSPACE_EMBEDDED_AGENT"] = "true";
        start.Environment["STREAMSPACE_HEARTBEAT_SECONDS"] = "2";
        foreach (var (name, value) in ExtraEnvironment) start.Environment[name] = value;
        _process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"The control plane exited with {_process.ExitCode}:\n{Output}");
            try
            {
                using var ready = await http.GetAsync("readyz");
                if (ready.StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"The control plane was not ready within {StartTimeout}:\n{Output}");
            await Task.Delay(250);
        }
    }

    public virtual async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        try { Directory.Delete(DataFolder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>The tests' own build of the control plane, published once per test run (seconds: no build, no ReadyToRun).</summary>
    private static readonly Lazy<Task<string>> Published = new(PublishAsync);

    private static async Task<string> PublishAsync()
    {
        var built = typeof(StreamSpaceApp).Assembly.Location;
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "StreamSpace.slnx"))) root = root.Parent;
        if (root is null) throw new DirectoryNotFoundException("repository root (StreamSpace.slnx) not found above " + AppContext.BaseDirectory);
        var configuration = built.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var output = Path.Combine(Path.GetTempPath(), "streamspace-journey", "published-" + Guid.NewGuid().ToString("N")[..8]);
        var publish = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { "publish", Path.Combine(root.FullName, "src", "StreamSpace.ControlPlane"), "-c", configuration, "--no-build", "-nologo", "-v:q", "-o", output },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(publish) ?? throw new InvalidOperationException("dotnet publish did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"dotnet publish failed ({process.ExitCode}):\n{await stdout}{await stderr}");
        return Path.Combine(output, Path.GetFileName(built));
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
