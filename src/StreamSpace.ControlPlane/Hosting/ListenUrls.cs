using System.Globalization;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// Checks the listen addresses before anything starts. Kestrel parses them only when it starts listening, after the
/// database is migrated and the admin account made, and then a malformed one (<c>garbage</c>, <c>ftp://…</c>, a port above
/// 65535) was an unhandled exception that aborted the process, while a port that is not a number
/// (<c>http://127.0.0.1:notaport</c>) was taken as part of the host name: Kestrel then listened on port 80 of every
/// interface. Any of those is now a setting the control plane cannot start with (exit code 2), named with its value.
/// </summary>
public static class ListenUrls
{
    public const string Expected = "http:// or https:// addresses with a port, ';'-separated (e.g. http://127.0.0.1:8000 or http://0.0.0.0:8000)";

    /// <summary>The problem with <paramref name="urls"/> (as Kestrel reads them), or null when Kestrel can listen on each.</summary>
    public static string? Problem(string urls)
    {
        var entries = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (entries.Length == 0) return "names no address";
        foreach (var url in entries)
        {
            if (ProblemOf(url) is { } problem) return $"'{StreamSpaceConfigurationException.WithoutPassword(url)}' {problem}";
        }
        return null;
    }

    private static string? ProblemOf(string url)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0) return "is not an address";
        var scheme = url[..schemeEnd];
        if (!scheme.Equals("http", StringComparison.OrdinalIgnoreCase) && !scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
            return $"has the scheme '{scheme}'; the control plane serves http and https";
        var rest = url[(schemeEnd + 3)..];
        var authority = rest.IndexOf('/') is var slash and >= 0 ? rest[..slash] : rest;
        // A Unix socket (http://unix:/run/streamspace.sock): Kestrel listens on the path.
        if (authority.StartsWith("unix:", StringComparison.OrdinalIgnoreCase) && rest.Length > "unix:".Length + 1) return null;
        string host, port;
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']');
            if (close < 0) return "has an IPv6 host without its closing ']'";
            host = authority[..(close + 1)];
            var after = authority[(close + 1)..];
            if (after.Length > 0 && after[0] != ':') return "has text after its IPv6 host that is not a port";
            port = after.Length > 0 ? after[1..] : "";
        }
        else
        {
            var colon = authority.LastIndexOf(':');
            host = colon >= 0 ? authority[..colon] : authority;
            port = colon >= 0 ? authority[(colon + 1)..] : "";
            if (host.Contains(':')) return "has a host with a ':' in it (an IPv6 address goes in brackets: http://[::1]:8000)";
        }
        if (host.Length == 0) return "has no host";
        if (port.Length == 0) return "has no port";
        if (!port.All(char.IsAsciiDigit) || !int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number > 65535)
            return $"has the port '{port}'; a port is a number from 0 to 65535";
        return null;
    }
}
