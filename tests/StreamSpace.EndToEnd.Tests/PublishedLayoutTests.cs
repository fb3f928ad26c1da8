using System.Diagnostics;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// The control plane as <c>./run.sh</c> runs it: published (<c>dotnet publish</c>, its web assets in <c>wwwroot</c> next to
/// the program) and started from another folder (the checkout). Every other test runs the build output, whose assets the
/// runtime manifest maps from the project; the published program took <c>wwwroot</c> under the current folder, found
/// nothing there and answered every asset 200 with an empty body: no styles, no Blazor script, no icon.
/// </summary>
public sealed class PublishedLayoutTests
{
    [Fact]
    public async Task The_published_control_plane_started_from_another_folder_serves_its_web_assets()
    {
        var ct = TestContext.Current.CancellationToken;
        using var scratch = new ScratchFolder("streamspace-e2e-published-");
        var published = Path.Combine(scratch.Path, "control-plane");
        // The tests' own build, published as it is (seconds): the layout is what matters, not Release or ReadyToRun.
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var psi = new ProcessStartInfo("dotnet", ["publish", Path.Combine(Paths.RepoRoot, "src", "StreamSpace.ControlPlane"),
            "-c", configuration, "--no-build", "-nologo", "-v:q", "-o", published]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var publish = Process.Start(psi)!)
        {
            var output = publish.StandardOutput.ReadToEndAsync(ct);
            var errors = publish.StandardError.ReadToEndAsync(ct);
            await publish.WaitForExitAsync(ct);
            publish.ExitCode.ShouldBe(0, await output + await errors);
        }
        File.Exists(Path.Combine(published, "wwwroot", "app.css")).ShouldBeTrue("dotnet publish put the web assets next to the program");

        var address = new Uri($"http://127.0.0.1:{FreePort.Next()}");
        var elsewhere = Directory.CreateDirectory(Path.Combine(scratch.Path, "checkout")).FullName;
        await using var cp = ManagedProcess.Start("control-plane-published", Path.Combine(published, "StreamSpace.ControlPlane"),
            new Dictionary<string, string?>
            {
                ["STREAMSPACE_URLS"] = address.ToString().TrimEnd('/'),
                ["STREAMSPACE_DATA"] = Path.Combine(scratch.Path, "data"),
                ["STREAMSPACE_ADMIN_PASSWORD"] = Platform.AdminPassword,
                ["STREAMSPACE_EMBEDDED_AGENT"] = "false",
            }, elsewhere);
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(10) };
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            cp.HasExited.ShouldBeFalse(cp.Output);
            try
            {
                using var ready = await http.GetAsync("/readyz", ct);
                if (ready.IsSuccessStatusCode) break;
            }
            catch (HttpRequestException)
            {
            }
            if (DateTime.UtcNow > until) throw new TimeoutException("the published control plane did not become ready: " + cp.Output);
            await Task.Delay(200, ct);
        }

        foreach (var (path, type, source) in new[]
                 {
                     ("/app.css", "text/css", Path.Combine(Paths.RepoRoot, "src", "StreamSpace.ControlPlane", "wwwroot", "app.css")),
                     ("/favicon.ico", "image/x-icon", Path.Combine(Paths.RepoRoot, "src", "StreamSpace.ControlPlane", "wwwroot", "favicon.ico")),
                     ("/_framework/blazor.web.js", "text/javascript", Path.Combine(published, "wwwroot", "_framework", "blazor.web.js")),
                 })
        {
            using var response = await http.GetAsync(path, ct);
            response.StatusCode.ShouldBe(System.Net.HttpStatusCode.OK, path);
            response.Content.Headers.ContentType?.MediaType.ShouldBe(type, path);
            var (body, expected) = (await response.Content.ReadAsByteArrayAsync(ct), await File.ReadAllBytesAsync(source, ct));
            body.Length.ShouldBe(expected.Length, $"{path}: the bytes of {source}");
            body.SequenceEqual(expected).ShouldBeTrue($"{path}: the bytes of {source}");
        }
        // The sign-in page links the stylesheet it serves.
        var signIn = await http.GetStringAsync("/signin", ct);
        signIn.ShouldMatch("<link rel=\"stylesheet\" href=\"app(\\.[a-z0-9]+)?\\.css\"");
    }
}
