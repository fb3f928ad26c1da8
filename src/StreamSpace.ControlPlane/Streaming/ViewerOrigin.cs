namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// The Origin rule of the viewer WebSocket: the control plane's one browser-origin rule (<see cref="Web.BrowserOrigin"/>),
/// with <see cref="StreamingOptions.AllowedOrigins"/> as the extra origins.
/// </summary>
internal static class ViewerOrigin
{
    public static bool IsAllowed(HttpRequest request, IReadOnlyList<string> extraOrigins) => Web.BrowserOrigin.IsAllowed(request, extraOrigins);
}
