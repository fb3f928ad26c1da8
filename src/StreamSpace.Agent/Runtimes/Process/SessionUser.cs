using System.Diagnostics;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// Who session processes run as. Under root that is an unprivileged account (created on first use), never root
/// itself: one account per StreamSpace user (<see cref="AccountName"/>), so sessions of different people on one agent
/// cannot read each other's files, X cookies or processes; or one shared account when per-owner accounts are turned
/// off. Otherwise sessions simply run as the agent's own user.
/// </summary>
internal sealed record SessionUser(string Name, int Uid, int Gid, bool SwitchUser)
{
    /// <summary>Longest account-name prefix: Linux account names are at most 32 characters, and the suffix takes 17.</summary>
    public const int MaxPrefixLength = 15;

    /// <param name="owner">The StreamSpace user of a per-owner account (a regular account: system uids run out after
    /// a few hundred); null for the shared account (a system account).</param>
    public static SessionUser Resolve(string name, string? owner = null)
    {
        if (!Environment.IsPrivilegedProcess)
        {
            return new SessionUser(Environment.UserName, -1, -1, SwitchUser: false);
        }
        if (Lookup(name) is not { } found)
        {
            string[] kind = owner is null ? ["--system"] : ["--comment", $"StreamSpace sessions of {owner}"];
            Run("useradd", [.. kind, "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]);
            found = Lookup(name) ?? throw new SessionRuntimeException($"user '{name}' could not be created");
        }
        if (found.Uid == 0) throw new SessionRuntimeException($"session user '{name}' has uid 0; sessions never run as root");
        return new SessionUser(name, found.Uid, found.Gid, SwitchUser: true);
    }

    /// <summary>
    /// The account of one StreamSpace user: <c>{prefix}-{16 hex digits of SHA-256(username)}</c>, the same on every
    /// agent and across restarts (so a persistent home keeps its owner), and a valid Linux account name whatever
    /// characters the username has.
    /// </summary>
    public static string AccountName(string prefix, string owner) =>
        $"{prefix}-{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(owner)))[..16]}";

    /// <summary>
    /// Gives <paramref name="path"/> and everything below it to this user when the folder belongs to someone else (a
    /// persistent home made while sessions ran under the shared account). Symbolic links are changed themselves and
    /// never followed (<c>chown -R -h</c>, physical walk), so a link in the home cannot hand the user a file elsewhere.
    /// </summary>
    public void OwnTree(string path)
    {
        if (!SwitchUser) return;
        var owner = Run("stat", "-c", "%u:%g", path).Trim();
        if (owner == $"{Uid}:{Gid}") return;
        Run("chown", "-R", "-h", $"{Uid}:{Gid}", path);
    }

    /// <summary>Arguments that run the rest of a command line as this user (setpriv keeps the pid, unlike su).</summary>
    public IEnumerable<string> SwitchArguments() => SwitchUser
        ? ["/usr/bin/setpriv", $"--reuid={Uid}", $"--regid={Gid}", "--clear-groups", "--"]
        : [];

    /// <summary>Hands <paramref name="path"/> to this user; only for a path no other account can swap (its folder is root's).</summary>
    public void Own(string path)
    {
        if (SwitchUser) Posix.Chown(path, Uid, Gid);
    }

    /// <summary>Hands an open file to this user (for a file in a folder the user owns: see <see cref="Posix.Chown(System.Runtime.InteropServices.SafeHandle, int, int)"/>).</summary>
    public void Own(System.Runtime.InteropServices.SafeHandle file)
    {
        if (SwitchUser) Posix.Chown(file, Uid, Gid);
    }

    private static (int Uid, int Gid)? Lookup(string name)
    {
        foreach (var line in File.ReadLines("/etc/passwd"))
        {
            var parts = line.Split(':');
            if (parts.Length >= 4 && parts[0] == name)
            {
                return (int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        return null;
    }

    /// <summary>Runs a system tool and returns its output; a failure carries the tool's own message.</summary>
    private static string Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start) ?? throw new SessionRuntimeException($"{file} could not be started");
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        // useradd 9 = the user already exists (another agent created it concurrently): fine.
        if (process.ExitCode != 0 && !(file == "useradd" && process.ExitCode == 9))
        {
            throw new SessionRuntimeException($"{file} failed with exit code {process.ExitCode}: {error.Result.Trim()}");
        }
        return output;
    }
}
