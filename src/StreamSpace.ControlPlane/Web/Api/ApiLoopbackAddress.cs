using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>
/// Where the UI reaches the API: this very process, on a loopback address it listens on. Resolved on first use,
/// once Kestrel has bound its (possibly dynamic) ports.
/// </summary>
public sealed class ApiLoopbackAddress(IServer server)
{
    private Uri? _address;

    public Uri BaseAddress => _address ??= Resolve(server.Features.Get<IServerAddressesFeature>()?.Addresses ?? []);

    internal static Uri Resolve(IEnumerable<string> addresses)
    {
        var candidates = addresses.Select(a => new UriBuilder(a.Replace("://+", "://0.0.0.0", StringComparison.Ordinal).Replace("://*", "://0.0.0.0", StringComparison.Ordinal))).ToList();
        // Plain HTTP first: the loopback call needs no certificate trust.
        var chosen = candidates.OrderBy(u => u.Scheme == Uri.UriSchemeHttp ? 0 : 1).FirstOrDefault()
            ?? throw new InvalidOperationException("The server has no listening address yet; the UI cannot reach the API.");
        if (chosen.Host is "0.0.0.0" or "localhost" or "[::]" or "::") chosen.Host = "127.0.0.1";
        chosen.Path = "/";
        return chosen.Uri;
    }
}
