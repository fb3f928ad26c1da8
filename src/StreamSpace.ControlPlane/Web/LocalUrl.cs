using System.Text;

namespace StreamSpace.ControlPlane.Web;

/// <summary>Return addresses after sign-in: only paths on this site, so the sign-in page is no open redirect.</summary>
public static class LocalUrl
{
    public static bool IsLocal(string? url) =>
        !string.IsNullOrEmpty(url)
        && url[0] == '/'
        && (url.Length == 1 || (url[1] != '/' && url[1] != '\\'))
        && !url.Contains("://", StringComparison.Ordinal)
        && !url.Any(char.IsControl);

    /// <summary>
    /// The local address ready for a Location header, or <c>/</c>. A path may hold any character (the cookie handler passes
    /// the request's decoded path, <c>/é</c> for <c>/%C3%A9</c>), but a header only ASCII: Kestrel refuses anything else
    /// with a 500 after the sign-in cookie is set. So spaces and non-ASCII characters are percent-encoded as UTF-8, which is
    /// the address the browser would have asked for; what is ASCII already (escapes included) stays as it is.
    /// </summary>
    public static string OrRoot(string? url) => IsLocal(url) && ToAscii(url!) is { Length: <= MaxLength } ascii ? ascii : "/";

    /// <summary>
    /// The longest return address kept, in its ASCII form. No request with a longer path and query reaches a page (a JSON 414,
    /// <see cref="Hosting.RequestTargetLimit"/>), so no address of this site is longer, nor is one the cookie handler makes; a longer one was made
    /// up elsewhere. Kept, it went into the Location header (100 000 characters gave a 100 kB header, which browsers and
    /// proxies refuse) and the sign-in form.
    /// </summary>
    public const int MaxLength = Hosting.RequestTargetLimit.MaxBytes;

    private static string ToAscii(string url)
    {
        if (!url.Any(c => c is <= ' ' or > '~')) return url;
        var ascii = new StringBuilder(url.Length * 3);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in url.EnumerateRunes())
        {
            if (rune.Value is > ' ' and <= '~')
            {
                ascii.Append((char)rune.Value);
                continue;
            }
            // A lone surrogate enumerates as U+FFFD, so every rune has its UTF-8 form.
            var length = rune.EncodeToUtf8(utf8);
            foreach (var b in utf8[..length]) ascii.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        return ascii.ToString();
    }
}
