using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>
/// The control plane as a user runs it: its own process (the built <c>StreamSpace.ControlPlane.dll</c>) on a
/// loopback port, SQLite in a fresh data folder, and the embedded local agent.
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
        var dll = typeof(StreamSpaceApp).Assembly.Location;
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { dll },
            WorkingDirectory = Path.GetDirectoryName(dll)!,
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

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
