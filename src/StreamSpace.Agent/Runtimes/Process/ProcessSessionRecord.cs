using System.Text.Json;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// What the agent must remember about a session to re-adopt it after a restart:
/// <c>&lt;state&gt;/sessions/&lt;id&gt;/session.json</c>. Pids are only trusted together with their start time.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed record ProcessSessionRecord
{
    public const string FileName = "session.json";

    public required string SessionId { get; init; }
    public required string User { get; init; }
    public required string Template { get; init; }
    public required int Display { get; init; }
    public required string SocketPath { get; init; }
    public required string HomePath { get; init; }
    public bool TemporaryHome { get; init; }
    /// <summary>Process group (and session) id: the pid of the session leader started with setsid.</summary>
    public required int Pgid { get; init; }
    public required RecordedProcess Leader { get; init; }
    public required RecordedProcess Xvnc { get; init; }
    public required RecordedProcess App { get; init; }

    /// <summary>The three processes the agent started and recorded (pid and start time).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<RecordedProcess> Processes => [Leader, Xvnc, App];
    /// <summary><c>running</c> or <c>hibernated</c>.</summary>
    public required string State { get; init; }
    public DateTimeOffset StartedAt { get; init; }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static ProcessSessionRecord? Load(string sessionDir) => LoadJson<ProcessSessionRecord>(Path.Combine(sessionDir, FileName), Json);

    /// <summary>A record the agent wrote, or null when there is none or it does not parse (cut short by a crash).</summary>
    internal static T? LoadJson<T>(string path, JsonSerializerOptions options) where T : class
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), options);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Only the agent reads a record: it names the session's user, template, display, socket, home and pids.</summary>
    public const UnixFileMode Mode = Commands.DurableFile.PrivateMode;

    /// <summary>
    /// Replaced as <see cref="Commands.DurableFile"/> replaces a file (never half-written, mode <see cref="Mode"/>): the
    /// session folder is traverse-only for the session accounts, so any of them that knows (or sees in <c>ps</c>) a
    /// session id could otherwise open its record by name.
    /// </summary>
    public void Save(string sessionDir) =>
        Commands.DurableFile.Replace(Path.Combine(sessionDir, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));

    /// <summary>Makes a record a build before <see cref="Mode"/> left readable by everybody private (at re-adoption).</summary>
    public static void MakePrivate(string sessionDir)
    {
        var path = Path.Combine(sessionDir, FileName);
        if (File.GetUnixFileMode(path) != Mode) File.SetUnixFileMode(path, Mode);
    }
}

/// <summary>A pid plus its start time from /proc/&lt;pid&gt;/stat field 22, so a reused pid is never mistaken for ours.</summary>
internal sealed record RecordedProcess(int Pid, long StartTime)
{
    public bool IsAlive => ProcFs.IsAlive(Pid, StartTime);
}

/// <summary>
/// What a start has running once it lets the app start (the launch file): saved just before, and removed once the
/// session's record is saved or the start is given up. From the launch file on, the session's leader, Xvnc and app
/// would outlive an agent that ends before the record is saved, with nothing on disk naming them; an agent that finds
/// this file without a record at its next start kills that group (<see cref="ProcessRuntime"/>'s start-up).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed record LaunchRecord(int Pgid, int Display, RecordedProcess Leader, RecordedProcess Xvnc)
{
    public const string FileName = "launching.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public void Save(string sessionDir) =>
        Commands.DurableFile.Replace(Path.Combine(sessionDir, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));

    public static LaunchRecord? Load(string sessionDir) => ProcessSessionRecord.LoadJson<LaunchRecord>(Path.Combine(sessionDir, FileName), Json);

    /// <summary>Removes the file (and a temp file a crash left); false when it could not be.</summary>
    public static bool Delete(string sessionDir)
    {
        try
        {
            File.Delete(Path.Combine(sessionDir, FileName));
            File.Delete(Path.Combine(sessionDir, FileName + Commands.DurableFile.TempSuffix));
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
