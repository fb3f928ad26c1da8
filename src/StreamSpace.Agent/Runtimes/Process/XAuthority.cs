using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// A session's X authorization: a fresh random MIT-MAGIC-COOKIE-1 in an Xauthority file only the session user can
/// read. Xvnc starts with <c>-auth</c> on it, which turns X access control on: without it any local process of any
/// user could connect to the session's X display (<c>:n</c>), read the screen and type into it. The session's own
/// programs find the file through <c>XAUTHORITY</c>. The agent itself never needs it: it speaks RFB on the VNC socket.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static class XAuthority
{
    public const string FileName = "Xauthority";
    private const string Protocol = "MIT-MAGIC-COOKIE-1";
    /// <summary>FamilyWild: the entry matches the display on any address (no hostname to get right).</summary>
    private const ushort FamilyWild = 0xFFFF;

    /// <summary>
    /// Writes a new cookie for <paramref name="display"/> to <paramref name="path"/> (mode 0600, then owned by the
    /// session user). The file is created exclusively after removing any old one, so a link the session user put
    /// there is never written through, and handed over by its open handle, never by name.
    /// </summary>
    public static void Write(string path, int display, SessionUser user)
    {
        File.Delete(path);
        var cookie = RandomNumberGenerator.GetBytes(16);
        using (var file = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            file.Write(Entry(display, cookie));
            // By the handle: the folder is the session user's, who could swap the name for a link to any file.
            user.Own(file.SafeFileHandle);
        }
    }

    /// <summary>One Xauthority entry: family, address, display number, protocol name, data; each counted by a big-endian u16.</summary>
    internal static byte[] Entry(int display, byte[] cookie)
    {
        var number = Encoding.ASCII.GetBytes(display.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var name = Encoding.ASCII.GetBytes(Protocol);
        var entry = new byte[2 + 2 + 2 + number.Length + 2 + name.Length + 2 + cookie.Length];
        var span = entry.AsSpan();
        BinaryPrimitives.WriteUInt16BigEndian(span, FamilyWild);
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], 0); // no address
        var at = 4;
        foreach (var field in new[] { number, name, cookie })
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[at..], (ushort)field.Length);
            field.CopyTo(span[(at + 2)..]);
            at += 2 + field.Length;
        }
        return entry;
    }
}
