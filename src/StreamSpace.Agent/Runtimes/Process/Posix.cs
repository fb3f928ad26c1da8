using System.Runtime.InteropServices;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// The few libc calls .NET has no API for: signals to process groups, chown, opening without following links, and who owns
/// a path.
/// </summary>
internal static partial class Posix
{
    private const int O_RDONLY = 0;
    private const int O_NONBLOCK = 0x800;
    /// <summary>O_NOFOLLOW of this process's architecture (<see cref="NoFollowFlag"/>).</summary>
    private static readonly int O_NOFOLLOW = NoFollowFlag(RuntimeInformation.ProcessArchitecture);
    private const int O_CLOEXEC = 0x80000;

    /// <summary>
    /// Linux's O_NOFOLLOW differs by architecture: 0100000 (octal) on arm, arm64 and powerpc, 0400000 in the generic
    /// header (x86-64, s390x, riscv64, loongarch64). On arm64 0400000 is O_LARGEFILE: passing the x86-64 value there would
    /// open links silently, handing a root agent whatever a session user's link points at.
    /// </summary>
    internal static int NoFollowFlag(Architecture architecture) => architecture switch
    {
        Architecture.Arm or Architecture.Arm64 or Architecture.Armv6 or Architecture.Ppc64le => 0x8000,
        _ => 0x20000,
    };

    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChownNative(string path, int owner, int group);

    [LibraryImport("libc", EntryPoint = "fchown", SetLastError = true)]
    private static partial int FchownNative(SafeHandle fd, int owner, int group);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int FtruncateNative(SafeHandle fd, long length);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncNative(SafeHandle fd);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int StatxNative(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUid();

    /// <summary>The user id this process acts as.</summary>
    public static int EffectiveUid => (int)GetEffectiveUid();

    private const int AT_FDCWD = -100;
    private const int AT_SYMLINK_NOFOLLOW = 0x100;
    private const int AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 0x1, STATX_MODE = 0x2, STATX_NLINK = 0x4, STATX_UID = 0x8, STATX_SIZE = 0x200;
    private const int O_WRONLY = 1;
    private const int O_APPEND = 0x400;

    /// <summary>What an open file is: its owner, its number of names (hard links), whether it is a regular file, its size.</summary>
    public readonly record struct FileFacts(int Uid, int Links, bool IsRegular, long Size);

    /// <summary>The size of <paramref name="path"/> itself (a link is not followed), or null when it does not exist.</summary>
    public static unsafe long? SizeOf(string path)
    {
        var buffer = stackalloc byte[256];
        if (StatxNative(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_SIZE, buffer) != 0) return null;
        return (long)*(ulong*)(buffer + 40); // u64 stx_size at offset 40
    }

    /// <summary>What the open <paramref name="file"/> is (statx of the descriptor), or null when the kernel does not say.</summary>
    public static unsafe FileFacts? Facts(SafeHandle file)
    {
        var buffer = stackalloc byte[256];
        var added = false;
        file.DangerousAddRef(ref added);
        try
        {
            if (StatxNative((int)file.DangerousGetHandle(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
                    STATX_TYPE | STATX_NLINK | STATX_UID | STATX_SIZE, buffer) != 0) return null;
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
        return new FileFacts((int)*(uint*)(buffer + 20), (int)*(uint*)(buffer + 16), (*(ushort*)(buffer + 28) & 0xF000) == 0x8000, (long)*(ulong*)(buffer + 40));
    }

    /// <summary>
    /// Opens <paramref name="path"/> for appending without following a link in its last part and without waiting on a
    /// FIFO; null when it cannot be opened so. Every write lands at the end, whatever else writes to it.
    /// </summary>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle? OpenAppendNoFollow(string path)
    {
        var fd = OpenNative(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        return fd < 0 ? null : new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>ftruncate: cuts the open file to <paramref name="length"/> bytes.</summary>
    public static void Truncate(SafeHandle file, long length)
    {
        if (FtruncateNative(file, length) != 0)
            throw new IOException($"ftruncate failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>
    /// What <paramref name="path"/> itself is (a link is not followed): its owner and its kind, or null when it does not
    /// exist. statx, because its struct has one layout on every architecture (struct stat has not).
    /// </summary>
    public static unsafe (int Uid, bool IsDirectory, bool IsLink)? Entry(string path)
    {
        // struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink, u32 uid (offset 20), u32 gid, u16 mode (offset 28); 256 bytes.
        var buffer = stackalloc byte[256];
        if (StatxNative(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID, buffer) != 0) return null;
        var uid = *(uint*)(buffer + 20);
        var type = *(ushort*)(buffer + 28) & 0xF000;
        return ((int)uid, type == 0x4000, type == 0xA000);
    }

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

    /// <summary>chown of an open file: unlike a path, the handle cannot be swapped for a link by whoever owns the folder.</summary>
    public static void Chown(SafeHandle file, int uid, int gid)
    {
        if (FchownNative(file, uid, gid) != 0)
        {
            throw new IOException($"fchown to {uid}:{gid} failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    /// <summary>fsync of a folder (which .NET cannot open as a file): makes a rename in it durable.</summary>
    public static void SyncFolder(string folder)
    {
        var fd = OpenNative(folder, O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open {folder} to flush it: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (FsyncNative(handle) != 0) throw new IOException($"cannot flush {folder}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>
    /// Opens <paramref name="path"/> for reading without following a link in its last part (O_NOFOLLOW) and without
    /// waiting for a writer when it is a FIFO (O_NONBLOCK); null when it cannot be opened so.
    /// </summary>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle? OpenNoFollow(string path)
    {
        var fd = OpenNative(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        return fd < 0 ? null : new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }
}
