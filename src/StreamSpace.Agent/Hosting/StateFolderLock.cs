using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// One agent per state folder: an exclusive lock on <c>&lt;state&gt;/agent.lock</c>, held while the agent runs. Two agents
/// on one folder (the same agent started twice by mistake) would both adopt the folder's sessions, and each one's hello
/// would report the sessions the other started since as orphans, which the control plane stops.
/// </summary>
/// <remarks>
/// flock rather than fcntl record locks: a flock belongs to the open file, so two agents in one process (an embedded
/// agent, tests) exclude each other too, and the kernel drops it when the holder dies, however it died. Opened without
/// .NET's own advisory lock (which would also refuse a second agent, but lets nobody read the holder's pid from the file)
/// and close-on-exec, so a session's processes never inherit it and keep the folder locked after the agent is gone.
/// </remarks>
internal sealed partial class StateFolderLock : IDisposable
{
    public const string FileName = "agent.lock";

    private const int O_RDWR = 0x2;
    private const int O_CREAT = 0x40;
    private const int O_CLOEXEC = 0x80000;
    private const int LOCK_EX = 2;
    private const int LOCK_NB = 4;
    private const int EINTR = 4;
    private const int EWOULDBLOCK = 11;
    private const uint OwnerReadWrite = 0x180; // 0600

    private readonly SafeFileHandle _file;

    private StateFolderLock(SafeFileHandle file) => _file = file;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int FlockNative(SafeFileHandle fd, int operation);

    /// <summary>Takes the folder's lock without waiting; <see cref="AgentOptionsException"/> when another agent holds it.</summary>
    public static StateFolderLock Acquire(string stateFolder)
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
        return new StateFolderLock(file);
    }

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
