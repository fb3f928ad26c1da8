using System.Runtime.InteropServices;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>The few libc calls .NET has no API for: signals to process groups and chown.</summary>
internal static partial class Posix
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChownNative(string path, int owner, int group);

    /// <summary>Signals one process; false when it is gone.</summary>
    public static bool Signal(int pid, int signal) => pid > 1 && KillNative(pid, signal) == 0;

    /// <summary>Signals the whole process group; false when no process of the group is left.</summary>
    public static bool SignalGroup(int pgid, int signal) => pgid > 1 && KillNative(-pgid, signal) == 0;

    public static void Chown(string path, int uid, int gid)
    {
        if (ChownNative(path, uid, gid) != 0)
        {
            throw new IOException($"chown {path} to {uid}:{gid} failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }
}
