using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
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

    private static bool IsSetting(string name)
    {
        // DOTNET_X and ASPNETCORE_X are settings X too (ControlPlaneConfiguration).
        foreach (var prefix in new[] { "DOTNET_", "ASPNETCORE_" })
            if (name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) name = name[prefix.Length..];
        return name.StartsWith("STREAMSPACE_", StringComparison.OrdinalIgnoreCase) || name.StartsWith("StreamSpace__", StringComparison.OrdinalIgnoreCase)
            || name.EndsWith("URLS", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The control plane's configuration given <paramref name="args"/> and, as its whole environment, <paramref name="env"/>:
    /// the sources ASP.NET Core gives it (WebApplication.CreateBuilder, as StreamSpaceApp.Build calls it, in the folder
    /// run.sh starts it in), in their order, each environment-variable source read from <paramref name="env"/> instead
    /// of this process's environment (with its prefix, DOTNET_ or ASPNETCORE_, taken off; "__" is ":").
    /// </summary>
    private static IConfiguration ControlPlaneConfiguration(IDictionary<string, string?> env, string[] args)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [.. args, "--hostBuilder:reloadConfigOnChange=false"], ContentRootPath = Paths.RepoRoot });
        var layered = new ConfigurationBuilder();
        foreach (var source in ((IConfigurationBuilder)builder.Configuration).Sources)
        {
            if (source is EnvironmentVariablesConfigurationSource variables)
            {
                var prefix = variables.Prefix ?? "";
                layered.AddInMemoryCollection(env
                    .Where(e => e.Value is not null && e.Key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                    .Select(e => KeyValuePair.Create(e.Key[prefix.Length..].Replace("__", ":", StringComparison.Ordinal), e.Value)));
            }
            else
            {
                layered.Add(source);
            }
        }
        return layered.Build();
    }

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
    // STREAMSPACE_EMBEDDED_AGENT given on the command line, in each form .NET reads there: it wins over the variable.
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "--STREAMSPACE_EMBEDDED_AGENT=false" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "--streamspace_embedded_agent", "no" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "/STREAMSPACE_EMBEDDED_AGENT", "0" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "STREAMSPACE_EMBEDDED_AGENT=off" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=false" }, new[] { "--STREAMSPACE_EMBEDDED_AGENT=false", "--STREAMSPACE_EMBEDDED_AGENT=true" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "--STREAMSPACE_EMBEDDED_AGENT=" })]
    [InlineData(new[] { "StreamSpace__EmbeddedAgent=true" }, new[] { "--STREAMSPACE_EMBEDDED_AGENT=false" })]
    // "__" is ":" in variables only: on the command line it is part of the name.
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "--StreamSpace__EmbeddedAgent=false" })]
    // Variables with the prefixes ASP.NET Core also reads, under the plain ones: DOTNET_ over ASPNETCORE_.
    [InlineData(new[] { "DOTNET_STREAMSPACE_EMBEDDED_AGENT=true" }, new string[0])]
    [InlineData(new[] { "ASPNETCORE_STREAMSPACE_EMBEDDED_AGENT=no", "DOTNET_STREAMSPACE_EMBEDDED_AGENT=yes" }, new string[0])]
    [InlineData(new[] { "DOTNET_STREAMSPACE_EMBEDDED_AGENT=true", "STREAMSPACE_EMBEDDED_AGENT=false" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true", "DOTNET_StreamSpace__EmbeddedAgent=false" }, new string[0])]
    [InlineData(new[] { "ASPNETCORE_StreamSpace__EmbeddedAgent=true" }, new[] { "--STREAMSPACE_EMBEDDED_AGENT=false" })]
    // Values the control plane cannot read stop it: no agent. The section takes true or false only.
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true", "StreamSpace__EmbeddedAgent=yes" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=true" }, new[] { "--StreamSpace:EmbeddedAgent=" })]
    [InlineData(new[] { "STREAMSPACE_EMBEDDED_AGENT=maybe", "StreamSpace__EmbeddedAgent=true" }, new string[0])]
    public async Task Run_sh_says_an_embedded_agent_is_attached_exactly_when_the_control_plane_runs_one(string[] envSettings, string[] args)
    {
        var env = envSettings.Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => (string?)e[1]);
        bool controlPlaneRunsOne;
        try
        {
            controlPlaneRunsOne = StreamSpaceOptions.FromConfiguration(ControlPlaneConfiguration(env, args)).EmbeddedAgent;
        }
        catch (StreamSpaceConfigurationException)
        {
            controlPlaneRunsOne = false; // it does not start
        }

        var runShSays = await RunShPartAsync("""if embedded_agent_on "$@"; then echo attached; else echo none; fi""", env, args);

        runShSays.Trim().ShouldBe(controlPlaneRunsOne ? "attached" : "none");
    }

    [Theory]
    [InlineData(new string[0], new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=/srv/streamspace-a" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=relative/data" }, new string[0])]
    // run.sh exports STREAMSPACE_DATA=./data when it is unset; the StreamSpace section wins over it, in any form.
    [InlineData(new[] { "STREAMSPACE_DATA=./data", "StreamSpace__DataFolder=/srv/streamspace-b" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=./data", "streamspace__datafolder=relative/b" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=./data", "DOTNET_StreamSpace__DataFolder=/srv/streamspace-c" }, new string[0])]
    [InlineData(new[] { "STREAMSPACE_DATA=./data" }, new[] { "--StreamSpace:DataFolder", "/srv/streamspace-d" })]
    [InlineData(new[] { "StreamSpace__DataFolder=/srv/streamspace-e" }, new[] { "--STREAMSPACE_DATA=/srv/streamspace-f" })]
    // STREAMSPACE_DATA as an argument wins over the variable.
    [InlineData(new[] { "STREAMSPACE_DATA=./data" }, new[] { "--STREAMSPACE_DATA=/srv/streamspace-g" })]
    [InlineData(new[] { "STREAMSPACE_DATA=./data" }, new[] { "/streamspace_data", "/srv/streamspace-h" })]
    [InlineData(new[] { "ASPNETCORE_STREAMSPACE_DATA=/srv/streamspace-i" }, new string[0])]
    public async Task Run_sh_reports_the_data_folder_the_control_plane_uses(string[] envSettings, string[] args)
    {
        var env = envSettings.Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => (string?)e[1]);
        // Both relative to this process's folder: the control plane resolves a relative one against the folder it starts in.
        var controlPlaneUses = StreamSpaceOptions.FromConfiguration(ControlPlaneConfiguration(env, args)).DataFolder;

        var runShSays = await RunShPartAsync("""data_folder "$@" """, env, args);

        Path.GetFullPath(runShSays).ShouldBe(controlPlaneUses);
    }

    /// <summary>
    /// One start as ./run.sh does it: what admin_password_saved says before, the control plane on <paramref name="env"/>
    /// until it answers /healthz, then what admin_login says. The control plane is the caller's to stop.
    /// </summary>
    private static async Task<(ManagedProcess ControlPlane, string Says)> StartAsRunShAsync(Uri baseAddress, Dictionary<string, string?> env)
    {
        var before = await RunShPartAsync("""admin_password_saved "$(data_folder "$@")" """, env, []);
        var cpEnv = new Dictionary<string, string?>(env) { ["STREAMSPACE_URLS"] = baseAddress.ToString().TrimEnd('/'), ["STREAMSPACE_EMBEDDED_AGENT"] = "false" };
        var cp = ManagedProcess.Start("control-plane-runsh-admin", Paths.ControlPlaneExe, cpEnv);
        try
        {
            using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(2) };
            await Platform.WaitUntilAsync(async () =>
            {
                if (cp.HasExited) throw new InvalidOperationException($"the control plane exited: {cp.Output}");
                try
                {
                    return (await http.GetAsync("/healthz", TestContext.Current.CancellationToken)).IsSuccessStatusCode;
                }
                catch (HttpRequestException) { return false; }
                catch (TaskCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested) { return false; }
            }, TimeSpan.FromSeconds(60), "the control plane answering /healthz");
            // As $(...) hands it over in run.sh: without the trailing newline.
            var afterEnv = new Dictionary<string, string?>(env) { ["RUNSH_ADMIN_BEFORE"] = before.TrimEnd('\n') };
            return (cp, await RunShPartAsync("""admin_login "$(data_folder "$@")" "$RUNSH_ADMIN_BEFORE" """, afterEnv, []));
        }
        catch
        {
            await cp.DisposeAsync();
            throw;
        }
    }

    private static async Task<HttpStatusCode> SignInAsync(Uri baseAddress, string password)
    {
        using var http = new HttpClient { BaseAddress = baseAddress };
        using var response = await http.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password }, TestContext.Current.CancellationToken);
        return response.StatusCode;
    }

    [Fact]
    public async Task Run_sh_shows_the_admin_password_only_after_the_start_that_made_it_and_reads_the_data_folder_the_control_plane_uses()
    {
        using var data = new ScratchFolder("runsh-admin-");
        // Where STREAMSPACE_DATA points while StreamSpace__DataFolder moves the control plane elsewhere: a stale password file.
        using var decoy = new ScratchFolder("runsh-decoy-");
        await File.WriteAllTextAsync(Path.Combine(decoy.Path, "admin-password.txt"), "stale-decoy-password\n", TestContext.Current.CancellationToken);
        var baseAddress = new Uri($"http://127.0.0.1:{FreePort.Next()}");
        var env = new Dictionary<string, string?> { ["STREAMSPACE_DATA"] = decoy.Path, ["StreamSpace__DataFolder"] = data.Path };

        // First start, no STREAMSPACE_ADMIN_PASSWORD: admin is made with a generated password, which run.sh shows.
        string generated;
        var (cp, says) = await StartAsRunShAsync(baseAddress, env);
        await using (cp)
        {
            generated = (await File.ReadAllTextAsync(Path.Combine(data.Path, "admin-password.txt"), TestContext.Current.CancellationToken)).TrimEnd('\n');
            says.ShouldContain($"admin / {generated}  (saved in {data.Path}/admin-password.txt)");
            says.ShouldNotContain("stale-decoy-password");
            (await SignInAsync(baseAddress, generated)).ShouldBe(HttpStatusCode.OK);

            // The admin changes it.
            using var admin = new HttpClient { BaseAddress = baseAddress };
            using var login = await admin.PostAsJsonAsync("/api/v1/auth/login", new { username = "admin", password = generated }, TestContext.Current.CancellationToken);
            var token = (await login.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>(TestContext.Current.CancellationToken)).GetProperty("token").GetString();
            admin.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            var me = await admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/users/me", TestContext.Current.CancellationToken);
            using var changed = await admin.PatchAsJsonAsync($"/api/v1/users/{me.GetProperty("id").GetString()}", new { password = "changed-by-the-admin" }, TestContext.Current.CancellationToken);
            changed.StatusCode.ShouldBe(HttpStatusCode.OK, await changed.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            await cp.StopAsync(TimeSpan.FromSeconds(10));
        }

        // Later starts, without and with STREAMSPACE_ADMIN_PASSWORD (which applies to a first start only): no password shown.
        foreach (var variable in new[] { null, "from-the-variable-later" })
        {
            var later = new Dictionary<string, string?>(env) { ["STREAMSPACE_ADMIN_PASSWORD"] = variable };
            if (variable is null) later.Remove("STREAMSPACE_ADMIN_PASSWORD");
            (cp, says) = await StartAsRunShAsync(baseAddress, later);
            await using (cp)
            {
                says.ShouldNotContain(generated, Case.Sensitive, "the admin changed it");
                says.ShouldNotContain("the password in STREAMSPACE_ADMIN_PASSWORD");
                says.ShouldNotContain("stale-decoy-password");
                says.ShouldContain("the password of this database's first start, unless it was changed since");
                says.ShouldContain($"{data.Path}/admin-password.txt");
                (await SignInAsync(baseAddress, generated)).ShouldBe(HttpStatusCode.Unauthorized);
                (await SignInAsync(baseAddress, "from-the-variable-later")).ShouldBe(HttpStatusCode.Unauthorized);
                (await SignInAsync(baseAddress, "changed-by-the-admin")).ShouldBe(HttpStatusCode.OK);
                await cp.StopAsync(TimeSpan.FromSeconds(10));
            }
        }
    }
}
