using System.Diagnostics;

namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A network namespace of our own with a veth pair to the host: a second "host" for tests of what
/// crosses a network. Addresses are on the veth link only (never routed anywhere else). Traffic can be
/// black-holed with iptables DROP rules on the host side and restored.
/// </summary>
public sealed class NetworkNamespace : IAsyncDisposable
{
    private readonly string _hostIf;
    private bool _dropping;

    private NetworkNamespace(string name, string hostIf, string hostAddress, string nsAddress)
    {
        Name = name;
        _hostIf = hostIf;
        HostAddress = hostAddress;
        NamespaceAddress = nsAddress;
    }

    public string Name { get; }
    /// <summary>The host side of the link, where the control plane listens for the namespace.</summary>
    public string HostAddress { get; }
    public string NamespaceAddress { get; }

    public static async Task<NetworkNamespace> CreateAsync()
    {
        var n = Random.Shared.Next(1, 250);
        var suffix = Guid.NewGuid().ToString("N")[..6];
        var ns = new NetworkNamespace($"ss-e2e-{suffix}", $"ssh{suffix}", $"10.254.{n}.1", $"10.254.{n}.2");
        var nsIf = $"ssn{suffix}";
        await RunAsync("ip", "netns", "add", ns.Name);
        await RunAsync("ip", "link", "add", ns._hostIf, "type", "veth", "peer", "name", nsIf);
        await RunAsync("ip", "link", "set", nsIf, "netns", ns.Name);
        await RunAsync("ip", "addr", "add", ns.HostAddress + "/30", "dev", ns._hostIf);
        await RunAsync("ip", "link", "set", ns._hostIf, "up");
        await RunAsync("ip", "netns", "exec", ns.Name, "ip", "addr", "add", ns.NamespaceAddress + "/30", "dev", nsIf);
        await RunAsync("ip", "netns", "exec", ns.Name, "ip", "link", "set", nsIf, "up");
        await RunAsync("ip", "netns", "exec", ns.Name, "ip", "link", "set", "lo", "up");
        return ns;
    }

    /// <summary>Silently drops every packet on the link, both ways (no RST, no FIN: a dead network).</summary>
    public async Task DropTrafficAsync()
    {
        await RunAsync("iptables", "-I", "INPUT", "-i", _hostIf, "-j", "DROP");
        await RunAsync("iptables", "-I", "OUTPUT", "-o", _hostIf, "-j", "DROP");
        _dropping = true;
    }

    public async Task RestoreTrafficAsync()
    {
        if (!_dropping) return;
        await RunAsync("iptables", "-D", "INPUT", "-i", _hostIf, "-j", "DROP");
        await RunAsync("iptables", "-D", "OUTPUT", "-o", _hostIf, "-j", "DROP");
        _dropping = false;
    }

    public async ValueTask DisposeAsync()
    {
        try { await RestoreTrafficAsync(); } catch (InvalidOperationException) { }
        try { await RunAsync("ip", "netns", "del", Name); } catch (InvalidOperationException) { }
        try { await RunAsync("ip", "link", "del", _hostIf); } catch (InvalidOperationException) { }
    }

    public static async Task RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
    }
}
