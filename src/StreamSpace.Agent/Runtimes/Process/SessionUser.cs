using System.Diagnostics;

namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// Who session processes run as. Under root that is a dedicated unprivileged system user (created on first
/// use), never root itself; otherwise sessions simply run as the agent's own user.
/// </summary>
internal sealed record SessionUser(string Name, int Uid, int Gid, bool SwitchUser)
{
    public static SessionUser Resolve(string name)
    {
        if (!Environment.IsPrivilegedProcess)
        {
            return new SessionUser(Environment.UserName, -1, -1, SwitchUser: false);
        }
        if (Lookup(name) is not { } found)
        {
            Run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name);
            found = Lookup(name) ?? throw new SessionRuntimeException($"user '{name}' could not be created");
        }
        if (found.Uid == 0) throw new SessionRuntimeException($"session user '{name}' has uid 0; sessions never run as root");
        return new SessionUser(name, found.Uid, found.Gid, SwitchUser: true);
    }

    /// <summary>Arguments that run the rest of a command line as this user (setpriv keeps the pid, unlike su).</summary>
    public IEnumerable<string> SwitchArguments() => SwitchUser
        ? ["/usr/bin/setpriv", $"--reuid={Uid}", $"--regid={Gid}", "--clear-groups", "--"]
        : [];

    public void Own(string path)
    {
        if (SwitchUser) Posix.Chown(path, Uid, Gid);
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

    private static void Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start) ?? throw new SessionRuntimeException($"{file} could not be started");
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        // 9 = the user already exists (another agent created it concurrently): fine.
        if (process.ExitCode is not (0 or 9))
        {
            throw new SessionRuntimeException($"{file} failed with exit code {process.ExitCode}: {error.Trim()}");
        }
    }
}
