using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// The viewer page in a real headless Chromium (driven over the DevTools protocol): it gets a ticket with
/// the user's bearer token from sessionStorage, noVNC connects through the relay to a real Xvnc running
/// xterm, and the desktop is drawn; a hibernated session shows a message instead of a black screen.
/// </summary>
public sealed partial class ViewerBrowserTests(StreamingSqliteControlPlane cp) : IClassFixture<StreamingSqliteControlPlane>
{
    [Fact]
    public async Task Viewer_page_connects_noVNC_through_the_relay_to_real_Xvnc_and_explains_a_hibernated_session()
    {
        await using var xvnc = await StreamingXvnc.StartAsync(1024, 768, withApp: "xterm");
        var (_, aliceId, aliceToken) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        cp.AgentSide.Serve(session, xvnc.ConnectAsync);
        await using var browser = await HeadlessChromium.StartAsync();

        // sessionStorage is per origin: open a same-origin asset first, store the token, then load the viewer.
        await browser.NavigateAsync(new Uri(cp.BaseAddress, "/viewer/viewer.css"));
        await browser.EvaluateAsync($"sessionStorage.setItem('streamspace.token', {JsonSerializer.Serialize(aliceToken)})");
        await browser.NavigateAsync(new Uri(cp.BaseAddress, $"/sessions/{session}/view"));

        await browser.WaitForAsync("document.getElementById('status').textContent === 'Connected'", TimeSpan.FromSeconds(30));
        (await browser.EvaluateAsync("document.getElementById('overlay').hidden")).ShouldBe("true");
        // resizeSession: Xvnc (1024x768 at start) is asked to take the size of the browser's screen area.
        await browser.WaitForAsync("document.querySelector('#screen canvas').width === document.getElementById('screen').clientWidth", TimeSpan.FromSeconds(15));
        // Something other than black was drawn (xterm's white window on the root).
        await browser.WaitForAsync(
            """
            (() => { const c = document.querySelector('#screen canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) return true; return false; })()
            """, TimeSpan.FromSeconds(15));
        await browser.ScreenshotAsync(Path.Combine(Path.GetTempPath(), "streamspace-tests", "viewer-connected.png"));

        // The session goes away: the viewer reconnects, re-reads the session and explains instead of showing black.
        await cp.SetSessionStateAsync(session, "hibernated");
        await xvnc.DisposeAsync();
        await browser.WaitForAsync("document.getElementById('overlay-message').textContent.includes('hibernated')", TimeSpan.FromSeconds(30));
        (await browser.EvaluateAsync("document.getElementById('overlay').hidden")).ShouldBe("false");
        await browser.ScreenshotAsync(Path.Combine(Path.GetTempPath(), "streamspace-tests", "viewer-hibernated.png"));
    }

    [Fact]
    public async Task Viewer_page_shows_the_servers_close_reason_and_stops_when_access_ended()
    {
        var (_, aliceId, aliceToken) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var silent = await cp.CreateSessionAsync(aliceId); // no endpoint: the "agent" never opens the stream
        var echoed = await cp.CreateSessionAsync(aliceId);
        await using var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(echoed, echo.ConnectAsync);
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(new Uri(cp.BaseAddress, "/viewer/viewer.css"));
        await browser.EvaluateAsync($"sessionStorage.setItem('streamspace.token', {JsonSerializer.Serialize(aliceToken)})");

        // The relay's reason (close 1001 after the rendezvous timeout) is on the page, not a generic "connection lost".
        await browser.NavigateAsync(new Uri(cp.BaseAddress, $"/sessions/{silent}/view"));
        await browser.WaitForAsync("document.getElementById('overlay-message').textContent.includes('did not open the stream')", TimeSpan.FromSeconds(30));

        // A stream whose access ends (close 1008): the reason stays, no reconnect replaces it.
        await browser.NavigateAsync(new Uri(cp.BaseAddress, $"/sessions/{echoed}/view"));
        await RelayTests.WaitUntilAsync(() => echo.OpenConnections == 1);
        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{aliceId}", new { password = "a-new-password-2" }, TestContext.Current.CancellationToken))
            .StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
        var ended = $"document.getElementById('overlay-message').textContent === {JsonSerializer.Serialize(ViewerAccess.EndedReason)}";
        await browser.WaitForAsync(ended, TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken); // longer than the first reconnect's backoff
        (await browser.EvaluateAsync(ended)).ShouldBe("true");
        (await browser.EvaluateAsync("document.getElementById('status').textContent")).ShouldBe("Disconnected");
    }

    [Fact]
    public async Task Viewer_page_shows_a_vnc_servers_refusal_and_does_not_retry_it_by_itself()
    {
        var (_, aliceId, aliceToken) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        await using var refusing = StreamingTestServer.RefusingRfb("too many security failures");
        cp.AgentSide.Serve(session, refusing.ConnectAsync);
        await using var browser = await HeadlessChromium.StartAsync();
        await browser.NavigateAsync(new Uri(cp.BaseAddress, "/viewer/viewer.css"));
        await browser.EvaluateAsync($"sessionStorage.setItem('streamspace.token', {JsonSerializer.Serialize(aliceToken)})");

        await browser.NavigateAsync(new Uri(cp.BaseAddress, $"/sessions/{session}/view"));
        var refused = "document.getElementById('overlay-message').textContent === 'The session refused the connection: too many security failures'";
        await browser.WaitForAsync(refused, TimeSpan.FromSeconds(30));
        // noVNC reports the disconnect right after: the reason stays and no new ticket or stream is asked for.
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken); // longer than the first reconnect's backoff
        (await browser.EvaluateAsync(refused)).ShouldBe("true");
        (await browser.EvaluateAsync("document.getElementById('status').textContent")).ShouldBe("Disconnected");
        (await browser.EvaluateAsync("document.getElementById('overlay-retry').hidden")).ShouldBe("false");
        refusing.ServedConnections.ShouldBe(1);
    }

    /// <summary>Just enough of the Chrome DevTools protocol to drive one page.</summary>
    private sealed partial class HeadlessChromium : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ClientWebSocket _page = new();
        private readonly string _profile;
        private int _nextId;

        private HeadlessChromium(Process process, string profile)
        {
            _process = process;
            _profile = profile;
        }

        public static async Task<HeadlessChromium> StartAsync()
        {
            var executable = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome" }.FirstOrDefault(File.Exists)
                ?? throw new InvalidOperationException("The viewer browser test needs Chromium (Debian package 'chromium').");
            var profile = Path.Combine(Path.GetTempPath(), "streamspace-tests", "chromium-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(profile);
            var start = new ProcessStartInfo(executable)
            {
                ArgumentList =
                {
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", $"--user-data-dir={profile}",
                    "--window-size=1280,900", "about:blank",
                },
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            var process = Process.Start(start) ?? throw new InvalidOperationException("Chromium did not start");
            var browser = new HeadlessChromium(process, profile);
            process.BeginOutputReadLine();
            var endpoint = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is { } line && DevToolsLine().Match(line) is { Success: true } m) endpoint.TrySetResult(new Uri(m.Groups[1].Value));
            };
            process.BeginErrorReadLine();
            var browserWs = await endpoint.Task.WaitAsync(TimeSpan.FromSeconds(30));
            using var http = new HttpClient();
            var targets = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{browserWs.Port}/json/list"))!.AsArray();
            var page = targets.First(t => (string?)t!["type"] == "page")!;
            await browser._page.ConnectAsync(new Uri((string)page["webSocketDebuggerUrl"]!), CancellationToken.None);
            return browser;
        }

        public async Task NavigateAsync(Uri url)
        {
            await CallAsync("Page.navigate", new JsonObject { ["url"] = url.ToString() });
            await WaitForAsync("document.readyState === 'complete'", TimeSpan.FromSeconds(15));
        }

        public async Task<string> EvaluateAsync(string expression)
        {
            var result = await CallAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true });
            if (result["exceptionDetails"] is { } error) throw new InvalidOperationException($"{expression} threw: {error.ToJsonString()}");
            return result["result"]?["value"]?.ToJsonString().Trim('"') ?? "undefined";
        }

        public async Task WaitForAsync(string condition, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                try
                {
                    if (await EvaluateAsync(condition) == "true") return;
                }
                catch (InvalidOperationException) when (DateTime.UtcNow < deadline)
                {
                    // The page is navigating; evaluate again.
                }
                if (DateTime.UtcNow > deadline)
                {
                    var state = await EvaluateAsync("document.getElementById('status')?.textContent + ' | ' + document.getElementById('overlay-message')?.textContent");
                    throw new TimeoutException($"'{condition}' not true within {timeout}; page: {state}");
                }
                await Task.Delay(200);
            }
        }

        public async Task ScreenshotAsync(string path)
        {
            var result = await CallAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            await File.WriteAllBytesAsync(path, Convert.FromBase64String((string)result["data"]!));
        }

        private async Task<JsonNode> CallAsync(string method, JsonObject parameters)
        {
            var id = ++_nextId;
            var request = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _page.SendAsync(Encoding.UTF8.GetBytes(request.ToJsonString()), WebSocketMessageType.Text, true, cts.Token);
            var buffer = new byte[64 * 1024];
            while (true)
            {
                using var message = new MemoryStream();
                WebSocketReceiveResult r;
                do
                {
                    r = await _page.ReceiveAsync(buffer, cts.Token);
                    message.Write(buffer, 0, r.Count);
                } while (!r.EndOfMessage);
                var json = JsonNode.Parse(message.ToArray())!;
                if ((int?)json["id"] != id) continue; // an event
                if (json["error"] is { } error) throw new InvalidOperationException($"{method}: {error.ToJsonString()}");
                return json["result"]!;
            }
        }

        public async ValueTask DisposeAsync()
        {
            _page.Dispose();
            try
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            catch (InvalidOperationException) { }
            _process.Dispose();
            try { Directory.Delete(_profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        [GeneratedRegex(@"DevTools listening on (ws://\S+)")]
        private static partial Regex DevToolsLine();
    }
}
