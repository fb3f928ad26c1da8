using System.Diagnostics;
using System.Net.Sockets;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>A real TigerVNC Xvnc on a private unix socket, as the process runtime runs it per session.</summary>
public sealed class StreamingXvnc : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _folder;
    private Process? _app;
    private int _disposed;

    private StreamingXvnc(Process process, string folder, string socketPath)
    {
        _process = process;
        _folder = folder;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    public static async Task<StreamingXvnc> StartAsync(int width, int height, string? withApp = null)
    {
        var folder = Path.Combine(Path.GetTempPath(), "streamspace-tests", "xvnc-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        var socketPath = Path.Combine(folder, "vnc.sock");
        var display = FreeDisplay();
        var start = new ProcessStartInfo("Xvnc")
        {
            ArgumentList = { $":{display}", "-rfbunixpath", socketPath, "-rfbport", "-1", "-SecurityTypes", "None", "-nolisten", "tcp", "-geometry", $"{width}x{height}" },
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        var process = Process.Start(start) ?? throw new InvalidOperationException("Xvnc did not start");
        var log = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var xvnc = new StreamingXvnc(process, folder, socketPath);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (!File.Exists(socketPath))
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                await xvnc.DisposeAsync();
                lock (log) throw new InvalidOperationException($"Xvnc :{display} did not listen on {socketPath}: {log}");
            }
            await Task.Delay(50);
        }
        if (withApp is not null)
        {
            var app = new ProcessStartInfo(withApp) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            app.Environment["DISPLAY"] = $":{display}";
            xvnc._app = Process.Start(app);
        }
        return xvnc;
    }

    /// <summary>What the agent runtime's ConnectVncAsync returns: a stream on the session's VNC unix socket.</summary>
    public async Task<Stream> ConnectAsync(CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), ct);
        return new NetworkStream(socket, ownsSocket: true);
    }

    private static int FreeDisplay()
    {
        for (var i = 0; i < 200; i++)
        {
            var display = Random.Shared.Next(100, 1000);
            if (!File.Exists($"/tmp/.X{display}-lock") && !File.Exists($"/tmp/.X11-unix/X{display}")) return display;
        }
        throw new InvalidOperationException("no free X display number");
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        if (_app is not null)
        {
            try { _app.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            _app.Dispose();
        }
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }
}
