namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// The Origin rule of the viewer WebSocket: absent (not a browser) or the control plane's own
/// scheme://host[:port], or one of <see cref="StreamingOptions.AllowedOrigins"/>.
/// </summary>
internal static class ViewerOrigin
{
    public static bool IsAllowed(HttpRequest request, IReadOnlyList<string> extraOrigins)
    {
        var origin = request.Headers.Origin.ToString();
        if (origin.Length == 0) return true;
        if (!Uri.TryCreate(origin, UriKind.Absolute, out var presented)) return false;
        var own = $"{request.Scheme}://{request.Host.Value}";
        if (Uri.TryCreate(own, UriKind.Absolute, out var ownUri) && SameOrigin(presented, ownUri)) return true;
        foreach (var extra in extraOrigins)
        {
            if (Uri.TryCreate(extra, UriKind.Absolute, out var allowed) && SameOrigin(presented, allowed)) return true;
        }
        return false;
    }

    /// <summary>Scheme, host and port compared as RFC 6454 does (default ports made explicit by Uri).</summary>
    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.IdnHost, b.IdnHost, StringComparison.OrdinalIgnoreCase)
        && a.Port == b.Port;
}
