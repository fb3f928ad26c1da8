using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>
/// Input through the viewer in real Chromium: keys typed on the noVNC canvas reach the shell in a real xterm
/// session (via relay, embedded agent and Xvnc) and redraw the canvas; text selected in the session reaches the
/// viewer's clipboard panel (and the local clipboard, for the session's owner only); text sent from the panel is
/// pasted into the session.
/// </summary>
public sealed class ViewerTypingTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    /// <summary>Counts canvas pixels that differ from the snapshot taken by <see cref="SnapshotCanvasJs"/>.</summary>
    private const string ChangedPixelsJs =
        "() => { const c = document.querySelector('#screen canvas'); const b = window.__before; " +
        "if (!c || !b || c.width !== b.width || c.height !== b.height) return -1; " +
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; " +
        "for (let i = 0; i < d.length; i += 4) if (d[i] !== b.data[i] || d[i+1] !== b.data[i+1] || d[i+2] !== b.data[i+2]) n++; return n; }";

    private const string SnapshotCanvasJs =
        "() => { const c = document.querySelector('#screen canvas'); window.__before = c.getContext('2d').getImageData(0, 0, c.width, c.height); }";

    /// <summary>A point inside xterm's window, which X places at the desktop's top-left corner.</summary>
    private static readonly Position InsideXterm = new() { X = 40, Y = 40 };

    [Fact]
    public async Task Typing_on_the_viewer_canvas_runs_a_command_in_the_xterm_session_and_the_clipboard_works_both_ways()
    {
        var sessionId = await CreateRunningXtermAsAdminAsync();
        var home = Path.Combine(cp.DataFolder, "agent-local", "sessions", sessionId, "home");

        await using var context = await NewContextWithClipboardAsync();
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "viewer-typing", async () =>
        {
            var canvas = await OpenViewerAsAdminAsync(page, sessionId);

            // Wait until the desktop is drawn and still (resize to the window and xterm's first paint are over).
            var stillSince = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (true)
            {
                await page.EvaluateAsync(SnapshotCanvasJs);
                await Task.Delay(1000);
                if (await page.EvaluateAsync<int>(ChangedPixelsJs) == 0) break;
                DateTime.UtcNow.ShouldBeLessThan(stillSince, "the viewer canvas never settled");
            }
            var before = await canvas.ScreenshotAsync(new() { Path = Path.Combine(Chromium.ArtifactsFolder, "30-viewer-before-typing.png") });

            // Type as a user would: focus the canvas, then keys. The command leaves proof in the session's home.
            // No window manager: X keyboard focus follows the pointer, so click inside xterm (top-left of the desktop).
            await canvas.ClickAsync(new() { Position = InsideXterm });
            await page.Keyboard.TypeAsync("echo hello > $HOME/typed; echo hello", new() { Delay = 20 });
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForFunctionAsync($"() => ({ChangedPixelsJs})() > 200", null, new() { Timeout = 15_000 });
            var typedFile = Path.Combine(home, "typed");
            await WaitForFileAsync(typedFile, "hello\n");
            var after = await canvas.ScreenshotAsync(new() { Path = Path.Combine(Chromium.ArtifactsFolder, "31-viewer-after-typing.png") });
            after.ShouldNotBe(before);

            // Clipboard from the session: text selected in xterm (PRIMARY, which Xvnc sends) reaches the panel, and, this
            // being the viewer's own session, the local clipboard too.
            await page.WaitForFunctionAsync("() => document.body.dataset.clipboardMirror === 'true'");
            await page.EvaluateAsync("() => navigator.clipboard.writeText('local-before')");
            await SelectXtermLinesAsync(page, canvas);
            await page.WaitForFunctionAsync("() => document.querySelector('#clipboard-text').value.includes('hello')", null, new() { Timeout = 15_000 });
            await page.WaitForFunctionAsync("async () => (await navigator.clipboard.readText()).includes('hello')", null, new() { Timeout = 5_000 });
            (await page.Locator("#clipboard-mirror-note").IsHiddenAsync()).ShouldBeTrue();

            // Clipboard: the panel sends text to the session (noVNC clipboardPasteFrom); a middle click pastes it into
            // a running `cat`, which writes it to a file we can read.
            await page.Keyboard.TypeAsync("cat > $HOME/pasted", new() { Delay = 20 });
            await page.Keyboard.PressAsync("Enter");
            await page.Locator("#clipboard-toggle").ClickAsync();
            await page.Locator("#clipboard-text").FillAsync("pasted-from-viewer");
            await page.Locator("#clipboard-send").ClickAsync();
            await Task.Delay(500); // the ClientCutText must reach Xvnc before xterm asks for the selection
            await canvas.ClickAsync(new() { Button = MouseButton.Middle, Position = InsideXterm });
            // xterm inserts the paste when the selection arrives, which may be after the Enter below: the
            // file's content is compared without surrounding newlines.
            await Task.Delay(500);
            await page.Keyboard.PressAsync("Enter");
            await page.Keyboard.PressAsync("Control+D");
            await WaitForFileAsync(Path.Combine(home, "pasted"), "pasted-from-viewer\n");
            await Chromium.ScreenshotAsync(page, "32-viewer-after-paste");
        });
    }

    /// <summary>
    /// Text copied in another user's session (here: an admin viewing it) reaches the panel but not the viewer's own
    /// clipboard, which the session's programs could otherwise fill with text to be pasted into a terminal later.
    /// </summary>
    [Fact]
    public async Task Text_copied_in_another_users_session_stays_in_the_panel_and_is_not_put_on_the_viewers_clipboard()
    {
        var sessionId = await CreateRunningXtermAsAdminAsync(forUser: "clipowner");

        await using var context = await NewContextWithClipboardAsync();
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "viewer-foreign-clipboard", async () =>
        {
            var canvas = await OpenViewerAsAdminAsync(page, sessionId);
            await page.WaitForFunctionAsync("() => document.body.dataset.clipboardMirror === 'false'");
            await page.EvaluateAsync("() => navigator.clipboard.writeText('local-before')");

            await canvas.ClickAsync(new() { Position = InsideXterm });
            await page.Keyboard.TypeAsync("echo copied-by-the-owner", new() { Delay = 20 });
            await page.Keyboard.PressAsync("Enter");
            // Selected until it is there: the echo's output must be drawn before a selection can hold it.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (!(await page.Locator("#clipboard-text").InputValueAsync()).Contains("copied-by-the-owner", StringComparison.Ordinal))
            {
                DateTime.UtcNow.ShouldBeLessThan(deadline, "the session's selection never reached the panel");
                await SelectXtermLinesAsync(page, canvas);
                await Task.Delay(500);
            }
            await page.Locator("#clipboard-toggle").ClickAsync();
            await page.Locator("#clipboard-mirror-note").WaitForAsync();
            await Task.Delay(500); // a mirror would have been written with the panel's text, at once
            (await page.EvaluateAsync<string>("() => navigator.clipboard.readText()")).ShouldBe("local-before");
            await Chromium.ScreenshotAsync(page, "33-viewer-foreign-clipboard");
        });
    }

    /// <summary>A browser context whose pages may read and write the local clipboard (what the tests check it with).</summary>
    private async Task<IBrowserContext> NewContextWithClipboardAsync()
    {
        var context = await chromium.NewContextAsync(cp.BaseAddress);
        await context.GrantPermissionsAsync(["clipboard-read", "clipboard-write"], new() { Origin = cp.BaseAddress.ToString().TrimEnd('/') });
        return context;
    }

    /// <summary>Signs in as the admin and opens the session's viewer until it is connected; the noVNC canvas.</summary>
    private static async Task<ILocator> OpenViewerAsAdminAsync(IPage page, string sessionId)
    {
        await page.GotoAsync("/");
        await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
        await page.GotoAsync($"/sessions/{Uri.EscapeDataString(sessionId)}/view");
        await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 30_000 });
        var canvas = page.Locator("#screen canvas");
        await canvas.WaitForAsync();
        return canvas;
    }

    /// <summary>Drags across xterm's first lines (it sits at the desktop's top-left), selecting them as a user would.</summary>
    private static async Task SelectXtermLinesAsync(IPage page, ILocator canvas)
    {
        var box = (await canvas.BoundingBoxAsync())!;
        await page.Mouse.MoveAsync(box.X + 2, box.Y + 2);
        await page.Mouse.DownAsync();
        await page.Mouse.MoveAsync(box.X + 400, box.Y + 60, new() { Steps = 8 });
        await page.Mouse.UpAsync();
    }

    private static async Task WaitForFileAsync(string path, string content)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            var text = File.Exists(path) ? await File.ReadAllTextAsync(path) : null;
            if (text is not null && text.Trim('\n') == content.Trim('\n')) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{path} holds {(text is null ? "nothing" : JsonSerializer.Serialize(text))}, expected {JsonSerializer.Serialize(content)}");
            await Task.Delay(200);
        }
    }

    /// <param name="forUser">Create the session for this user (made first) instead of for the admin.</param>
    private async Task<string> CreateRunningXtermAsAdminAsync(string? forUser = null)
    {
        using var http = new HttpClient { BaseAddress = cp.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        using var login = await http.PostAsJsonAsync("api/v1/auth/login", new { username = "admin", password = ControlPlaneProcess.AdminPassword });
        login.EnsureSuccessStatusCode();
        var token = (await login.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (forUser is not null)
        {
            using var user = await http.PostAsJsonAsync("api/v1/users", new { username = forUser, password = forUser + "-password-1" });
            user.StatusCode.ShouldBe(System.Net.HttpStatusCode.Created, await user.Content.ReadAsStringAsync());
        }
        // The embedded agent dials in shortly after the control plane is ready: 503 until then.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        string id;
        while (true)
        {
            using var created = await http.PostAsJsonAsync("api/v1/sessions", new { template = "xterm", user = forUser });
            if (created.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
                continue;
            }
            created.StatusCode.ShouldBe(System.Net.HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
            id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
            break;
        }
        var running = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var state = (await http.GetFromJsonAsync<JsonElement>($"api/v1/sessions/{id}")).GetProperty("state").GetString();
            if (state == "running") return id;
            state.ShouldNotBeOneOf(["failed", "terminated"], $"session {id}");
            DateTime.UtcNow.ShouldBeLessThan(running, $"session {id} is still {state}");
            await Task.Delay(300);
        }
    }
}
