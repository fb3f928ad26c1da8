using System.Diagnostics;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// ./run.sh's reading of the control plane's settings (the part of run.sh between its "what the control plane will do"
/// markers, sourced on its own) against the control plane given the same arguments and environment: it waits for
/// /healthz where the control plane really listens, and says an embedded agent is attached exactly when one is.
/// </summary>
public sealed class RunShSettingsTests
{
    private static readonly string RunSh = Path.Combine(Paths.RepoRoot, "run.sh");

    /// <summary>
    /// Runs <paramref name="script"/> in bash after sourcing run.sh's settings part, with <paramref name="args"/> as its
    /// arguments (run.sh's own) and only <paramref name="env"/> set of the listen and StreamSpace variables.
    /// </summary>
    private static async Task<string> RunShPartAsync(string script, IDictionary<string, string?> env, string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"set -euo pipefail; source <(sed -n '/^# --- what the control plane will do/,/^# --- end of what the control plane will do/p' \"$0\"); {script}");
        psi.ArgumentList.Add(RunSh);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var key in psi.Environment.Keys.Where(IsSetting).ToList()) psi.Environment.Remove(key);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var bash = Process.Start(psi)!;
        var output = bash.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var errors = bash.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await bash.WaitForExitAsync(TestContext.Current.CancellationToken);
        bash.ExitCode.ShouldBe(0, await errors);
        return await output;
    }

    private static bool IsSetting(string name) =>
        name.StartsWith("STREAMSPACE_", StringComparison.OrdinalIgnoreCase) || name.StartsWith("StreamSpace__", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith("URLS", StringComparison.OrdinalIgnoreCase);

    [Theory]
    [InlineData(new[] { "--urls", "http://127.0.0.1:{0}" }, new[] { "STREAMSPACE_URLS=http://127.0.0.1:{1}" })]
    [InlineData(new[] { "--urls=http://127.0.0.1:{0}" }, new string[0])]
    [InlineData(new[] { "--StreamSpace:HeartbeatSeconds", "5", "/URLS", "http://localhost:{0}" }, new string[0])]
    [InlineData(new string[0], new[] { "ASPNETCORE_URLS=http://127.0.0.1:{0}", "STREAMSPACE_URLS=http://127.0.0.1:{1}" })]
    [InlineData(new string[0], new[] { "DOTNET_URLS=http://127.0.0.1:{0}", "ASPNETCORE_URLS=http://127.0.0.1:{1}" })]
    [InlineData(new string[0], new[] { "urls=http://127.0.0.1:{0}", "DOTNET_URLS=http://127.0.0.1:{1}" })]
    [InlineData(new[] { "--urls", "http://0.0.0.0:{0}" }, new[] { "ASPNETCORE_URLS=http://127.0.0.1:{1}" })]
    [InlineData(new string[0], new[] { "STREAMSPACE_URLS=http://127.0.0.1:{0};http://127.0.0.1:{1}" })]
    public async Task Run_sh_waits_for_healthz_where_the_control_plane_listens(string[] argTemplates, string[] envTemplates)
    {
        // {0} the port the control plane takes, {1} one it does not: nothing answers there.
        var ports = (First: FreePort.Next(), Second: FreePort.Next());
        string Ports(string template) => string.Format(CultureInfo.InvariantCulture, template, ports.First, ports.Second);
        var args = argTemplates.Select(Ports).ToArray();
        // Unset (null) unless the case sets it, for the control plane as for bash.
        var env = new Dictionary<string, string?> { ["URLS"] = null, ["DOTNET_URLS"] = null, ["ASPNETCORE_URLS"] = null };
        foreach (var setting in envTemplates.Select(Ports).Select(e => e.Split('=', 2))) env[setting[0]] = setting[1];

        var probe = await RunShPartAsync("""l=$(control_plane_urls "$@"); probe_url "${l%%;*}" """, env, args);
        probe.ShouldEndWith($":{ports.First}");

        var data = Paths.NewTempFolder("runsh-urls");
        try
        {
            var cpEnv = new Dictionary<string, string?>(env)
            {
                ["STREAMSPACE_DATA"] = data,
                ["STREAMSPACE_ADMIN_PASSWORD"] = Platform.AdminPassword,
                ["STREAMSPACE_EMBEDDED_AGENT"] = "false",
            };
            await using var cp = ManagedProcess.Start("control-plane-runsh", Paths.ControlPlaneExe, cpEnv, args);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            var watch = Stopwatch.StartNew();
            while (true)
            {
                cp.HasExited.ShouldBeFalse($"the control plane exited: {cp.Output}");
                try
                {
                    if ((await http.GetAsync($"{probe}/healthz", TestContext.Current.CancellationToken)).StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException) { }
                // Its socket listens early (agents wait in the accept queue while it starts), so an early request waits too.
                catch (TaskCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested) { }
                watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(30), $"nothing answered /healthz at {probe}, where run.sh waits: {cp.Output}");
                await Task.Delay(200, TestContext.Current.CancellationToken);
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Theory]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=1" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=yes" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT= On " }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=TRUE" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=0" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=off" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=No" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=yes", "StreamSpace__EmbeddedAgent=false" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=no", "StreamSpace__EmbeddedAgent=True" }, new string[0])]
    [InlineData(new[] { "StreamSpace__EmbeddedAgent=true" }, new[] { "--StreamSpace:EmbeddedAgent=false" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=false" }, new[] { "--streamspace:embeddedagent", "true" })]
    public async Task Run_sh_says_an_embedded_agent_is_attached_exactly_when_the_control_plane_runs_one(string[] envSettings, string[] args)
    {
        var env = envSettings.Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => (string?)e[1]);
        // The control plane's own reading: environment variables ("__" is ":") under its command line, as ASP.NET Core layers them.
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(env.Select(e => KeyValuePair.Create(e.Key.Replace("__", ":", StringComparison.Ordinal), e.Value)))
            .AddCommandLine(args)
            .Build();
        var controlPlaneRunsOne = StreamSpaceOptions.FromConfiguration(configuration).EmbeddedAgent;

        var runShSays = await RunShPartAsync("""if embedded_agent_on "$@"; then echo attached; else echo none; fi""", env, args);

        runShSays.Trim().ShouldBe(controlPlaneRunsOne ? "attached" : "none");
    }
}
