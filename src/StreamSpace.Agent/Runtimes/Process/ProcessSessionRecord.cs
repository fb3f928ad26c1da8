using System.Text.Json;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// What the agent must remember about a session to re-adopt it after a restart:
/// <c>&lt;state&gt;/sessions/&lt;id&gt;/session.json</c>. Pids are only trusted together with their start time.
/// </summary>
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

    public static ProcessSessionRecord? Load(string sessionDir)
    {
        var path = Path.Combine(sessionDir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<ProcessSessionRecord>(File.ReadAllText(path), Json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Write-then-rename so a crash never leaves a half-written record.</summary>
    public void Save(string sessionDir)
    {
        var path = Path.Combine(sessionDir, FileName);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json));
        File.Move(temp, path, overwrite: true);
    }
}

/// <summary>A pid plus its start time from /proc/&lt;pid&gt;/stat field 22, so a reused pid is never mistaken for ours.</summary>
internal sealed record RecordedProcess(int Pid, long StartTime)
{
    public bool IsAlive => ProcFs.IsAlive(Pid, StartTime);
}
