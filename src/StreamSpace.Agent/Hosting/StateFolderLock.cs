using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// One agent per state folder: an exclusive lock on <c>&lt;state&gt;/agent.lock</c>, held while the agent runs. Two agents
/// on one folder (the same agent started twice by mistake) would both adopt the folder's sessions, and each one's hello
/// would report the sessions the other started since as orphans, which the control plane stops. For the same reason a
/// folder belongs to one agent id (<c>&lt;state&gt;/agent-id</c>): an agent started under another id on it (a changed
/// <c>STREAMSPACE_AGENT_ID</c> or <c>StreamSpace__EmbeddedAgentId</c>) would re-adopt sessions the control plane has on
/// the old id, and its hello would have them all stopped. Such a start is refused before anything reads the folder.
/// </summary>
/// <remarks>
/// flock rather than fcntl record locks: a flock belongs to the open file, so two agents in one process (an embedded
/// agent, tests) exclude each other too, and the kernel drops it when the holder dies, however it died. Opened without
/// .NET's own advisory lock (which would also refuse a second agent, but lets nobody read the holder's pid from the file)
/// and close-on-exec, so a session's processes never inherit it and keep the folder locked after the agent is gone.
/// </remarks>
public sealed partial class StateFolderLock : IDisposable
{
    public const string FileName = "agent.lock";
    public const string OwnerFileName = "agent-id";

    private const int O_RDWR = 0x2;
    private const int O_CREAT = 0x40;
    private const int O_CLOEXEC = 0x80000;
    private const int LOCK_EX = 2;
    private const int LOCK_NB = 4;
    private const int EINTR = 4;
    private const int EWOULDBLOCK = 11;
    private const uint OwnerReadWrite = 0x180; // 0600

    private readonly SafeFileHandle _file;
    private readonly string _agentId;

    private StateFolderLock(SafeFileHandle file, string folder, string agentId)
    {
        _file = file;
        Folder = folder;
        _agentId = agentId;
    }

    /// <summary>The locked folder, as a full path.</summary>
    public string Folder { get; }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int FlockNative(SafeFileHandle fd, int operation);

    /// <summary>
    /// Takes the folder's lock without waiting for agent <paramref name="agentId"/>; <see cref="AgentOptionsException"/> when
    /// another agent holds it or the folder belongs to another agent id.
    /// </summary>
    public static StateFolderLock Acquire(string stateFolder, string agentId)
    {
        var folder = Path.GetFullPath(stateFolder);
        var path = Path.Combine(folder, FileName);
        var fd = OpenNative(path, O_RDWR | O_CREAT | O_CLOEXEC, OwnerReadWrite);
        if (fd < 0)
        {
            throw new AgentOptionsException($"the agent state folder {folder} (STREAMSPACE_AGENT_STATE) is unusable: cannot open {FileName}: {LastError()}");
        }
        var file = new SafeFileHandle(fd, ownsHandle: true);
        int error;
        do
        {
            error = FlockNative(file, LOCK_EX | LOCK_NB) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        while (error == EINTR);
        if (error != 0)
        {
            var holder = error == EWOULDBLOCK ? HolderOf(file) : null;
            file.Dispose();
            throw new AgentOptionsException(error == EWOULDBLOCK
                ? $"the agent state folder {folder} is in use by another agent{(holder is null ? "" : $" (pid {holder})")}: " +
                  "one state folder serves one agent process (STREAMSPACE_AGENT_STATE)"
                : $"the agent state folder {folder} (STREAMSPACE_AGENT_STATE) cannot be locked: {Marshal.GetPInvokeErrorMessage(error)}");
        }
        // For the refusal of the next agent that tries. Only the holder writes, so the file never names a stale holder for long.
        var pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        RandomAccess.SetLength(file, 0);
        RandomAccess.Write(file, pid, 0);
        var held = new StateFolderLock(file, folder, agentId);
        if (held.ReadFile(OwnerFileName) is { } owner && owner != agentId)
        {
            held.Dispose();
            throw new AgentOptionsException(
                $"the agent state folder {folder} belongs to agent '{owner}', not '{agentId}': its sessions are that agent's, and " +
                $"under another id the control plane would stop them all; start the agent as '{owner}' again (STREAMSPACE_AGENT_ID, " +
                $"StreamSpace__EmbeddedAgentId for the embedded agent), or give '{agentId}' a state folder of its own (STREAMSPACE_AGENT_STATE)");
        }
        return held;
    }

    /// <summary>
    /// Records the folder as this agent's, once it starts on it. A folder from before the record existed has none and is
    /// adopted by whichever id starts on it first. That is safe enough: an upgrade keeps its settings, so that is the id
    /// that used the folder; and had the id changed before the upgrade, that earlier start already reported the folder's
    /// sessions under the new id and had the old id's stopped, so the sessions left there are the new id's.
    /// </summary>
    public void RecordOwner()
    {
        if (ReadFile(OwnerFileName) is null) WriteFile(OwnerFileName, _agentId);
    }

    /// <summary>A small file of the folder's (trimmed), or null when it is missing or empty.</summary>
    public string? ReadFile(string name)
    {
        var path = Path.Combine(Folder, name);
        if (!File.Exists(path)) return null;
        var text = File.ReadAllText(path).Trim();
        return text.Length == 0 ? null : text;
    }

    /// <summary>Replaces a small file of the folder's (0600) as the lock's holder, durably (<see cref="Commands.DurableFile"/>).</summary>
    public void WriteFile(string name, string text) =>
        Commands.DurableFile.Replace(Path.Combine(Folder, name), Encoding.UTF8.GetBytes(text + "\n"));

    private static string LastError() => Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError());

    /// <summary>The pid the holder wrote, or null when it is not (yet) there.</summary>
    private static int? HolderOf(SafeFileHandle file)
    {
        var buffer = new byte[32];
        var read = RandomAccess.Read(file, buffer, 0);
        return int.TryParse(Encoding.ASCII.GetString(buffer, 0, read).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    /// <summary>Closes the file, which releases the lock.</summary>
    public void Dispose() => _file.Dispose();
}
