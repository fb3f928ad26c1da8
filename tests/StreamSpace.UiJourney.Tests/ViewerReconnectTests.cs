using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>
/// One stream per viewer page, in real Chromium against a real xterm session (relay, embedded agent, Xvnc): a
/// double click on Reconnect opens one stream, not two, and Disconnect then leaves none; a Disconnect pressed while
/// a reconnect still waits for its ticket ends that attempt before it opens anything. The streams are counted on
/// both ends: the page's WebSockets and the control plane's log of streams connected and ended.
/// </summary>
public sealed class ViewerReconnectTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    /// <summary>
    /// A hurried double click on Reconnect, 150 ms between the clicks; dispatched by page JS because the viewer hides
    /// the button once an attempt runs (a real second click would find nothing to click).
    /// </summary>
    private const string DoubleClickReconnectJs =
        "async () => { const b = document.getElementById('overlay-retry'); b.click(); await new Promise(r => setTimeout(r, 150)); b.click(); }";

    /// <summary>noVNC adds one screen (a div holding its canvas) under #screen per RFB object and removes it at disconnect.</summary>
    private const string ScreensJs = "() => document.getElementById('screen').children.length";

    /// <summary>How long after a ticket's answer an old page would have opened its socket (it does so at once).</summary>
    private static readonly TimeSpan SocketGrace = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task A_double_click_on_Reconnect_opens_one_stream_and_Disconnect_closes_it()
    {
        var sessionId = await StartXtermAsync();
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        var sockets = ViewerSockets.Watch(page);
        await Chromium.StepAsync(page, "viewer-reconnect-twice", async () =>
        {
            await OpenViewerAsync(page, sessionId);
            await DisconnectAsync(page, sessionId, sockets);

            var tickets = sockets.TicketsFinished;
            await page.EvaluateAsync(DoubleClickReconnectJs);
            await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 30_000 });
            // Both clicks' attempts are over: their tickets answered, and every socket they opened closed or reached
            // the session (the rendezvous with the agent takes up to 10 s).
            await WaitUntilAsync(() => sockets.TicketsFinished >= tickets + 2, TimeSpan.FromSeconds(15), () => $"the two clicks' tickets; {sockets}");
            await Task.Delay(SocketGrace);
            await WaitUntilAsync(() => sockets.Settled, TimeSpan.FromSeconds(30), () => $"the page's sockets settling; {sockets}");
            await Chromium.ScreenshotAsync(page, "40-viewer-after-double-reconnect");

            sockets.Open.ShouldBe(1, sockets.ToString());
            (await page.EvaluateAsync<int>(ScreensJs)).ShouldBe(1, "noVNC screens under #screen");
            (await page.Locator("#status").InnerTextAsync()).ShouldBe("Connected");
            // The server logged every stream that reached the session; of those, one is still relayed.
            await WaitUntilAsync(() => cp.Streams(sessionId).Connected >= sockets.Spoken, TimeSpan.FromSeconds(10),
                () => $"the control plane logging {sockets.Spoken} streams; it logged {cp.Streams(sessionId)}");
            await WaitUntilAsync(() => cp.Streams(sessionId).Open == 1, TimeSpan.FromSeconds(10),
                () => $"one open stream on the control plane; it has {cp.Streams(sessionId)}");

            await DisconnectAsync(page, sessionId, sockets);
        });
    }

    [Fact]
    public async Task Disconnect_while_the_viewer_waits_for_its_ticket_opens_no_stream()
    {
        var sessionId = await StartXtermAsync();
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        var sockets = ViewerSockets.Watch(page);
        // While a gate is set, the page's ticket request is held until the test releases it.
        (TaskCompletionSource Held, TaskCompletionSource Release)? gate = null;
        await page.RouteAsync("**/viewer-ticket", async route =>
        {
            if (gate is { } g)
            {
                g.Held.TrySetResult();
                await g.Release.Task;
            }
            await route.ContinueAsync();
        });
        await Chromium.StepAsync(page, "viewer-disconnect-during-ticket", async () =>
        {
            await page.GotoAsync("/");
            await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);

            // The page's first attempt: nothing covers the toolbar yet, so Disconnect is clicked.
            gate = NewGate();
            var tickets = sockets.TicketsFinished;
            await page.GotoAsync(ViewerPath(sessionId));
            await gate.Value.Held.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await page.Locator("#disconnect").ClickAsync();
            gate.Value.Release.SetResult();
            await ShouldHaveEndedWithoutStreamAsync(page, sessionId, sockets, tickets);

            // A reconnect: its Reconnect button is gone while it runs, and the overlay covers the toolbar, so a
            // keyboard user presses Disconnect.
            gate = NewGate();
            tickets = sockets.TicketsFinished;
            await page.Locator("#overlay-retry").ClickAsync();
            await gate.Value.Held.Task.WaitAsync(TimeSpan.FromSeconds(10));
            (await page.Locator("#overlay-retry").IsVisibleAsync()).ShouldBeFalse("Reconnect is offered while a reconnect runs");
            await page.Locator("#disconnect").FocusAsync();
            await page.Keyboard.PressAsync("Enter");
            gate.Value.Release.SetResult();
            await ShouldHaveEndedWithoutStreamAsync(page, sessionId, sockets, tickets);
            await Chromium.ScreenshotAsync(page, "41-viewer-disconnect-during-ticket");

            // The page still connects when asked to.
            gate = null;
            await page.Locator("#overlay-retry").ClickAsync();
            await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 30_000 });
            (await page.EvaluateAsync<int>(ScreensJs)).ShouldBe(1, "noVNC screens under #screen");
            await WaitUntilAsync(() => cp.Streams(sessionId).Open == 1, TimeSpan.FromSeconds(10),
                () => $"the viewer's stream on the control plane; it has {cp.Streams(sessionId)}");
            await DisconnectAsync(page, sessionId, sockets);
        });
    }

    private static (TaskCompletionSource Held, TaskCompletionSource Release) NewGate() =>
        (new(TaskCreationOptions.RunContinuationsAsynchronously), new(TaskCreationOptions.RunContinuationsAsynchronously));

    /// <summary>The held ticket was answered after Disconnect, and the attempt it belonged to opened nothing.</summary>
    private async Task ShouldHaveEndedWithoutStreamAsync(IPage page, string sessionId, ViewerSockets sockets, int ticketsBefore)
    {
        await WaitUntilAsync(() => sockets.TicketsFinished > ticketsBefore, TimeSpan.FromSeconds(10), () => "the held ticket's answer");
        await Task.Delay(SocketGrace);
        sockets.Opened.ShouldBe(0, $"the attempt opened a socket after Disconnect; {sockets}");
        (await page.EvaluateAsync<int>(ScreensJs)).ShouldBe(0, "noVNC screens under #screen");
        (await page.Locator("#status").InnerTextAsync()).ShouldBe("Disconnected");
        (await page.Locator("#overlay-message").InnerTextAsync()).ShouldBe("Disconnected.");
        cp.Streams(sessionId).Connected.ShouldBe(0, $"streams on the control plane: {cp.Streams(sessionId)}");
    }

    private async Task<string> StartXtermAsync()
    {
        using var api = await ApiScript.SignInAsync(cp.BaseAddress, "admin", ControlPlaneProcess.AdminPassword);
        var sessionId = await api.CreateSessionAsync("xterm");
        await api.WaitForRunningAsync(sessionId);
        return sessionId;
    }

    private async Task OpenViewerAsync(IPage page, string sessionId)
    {
        await page.GotoAsync("/");
        await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
        await page.GotoAsync(ViewerPath(sessionId));
        await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 30_000 });
        (await page.EvaluateAsync<int>(ScreensJs)).ShouldBe(1, "noVNC screens under #screen");
        await WaitUntilAsync(() => cp.Streams(sessionId).Open == 1, TimeSpan.FromSeconds(10),
            () => $"the viewer's stream on the control plane; it has {cp.Streams(sessionId)}");
    }

    private static string ViewerPath(string sessionId) => $"/sessions/{Uri.EscapeDataString(sessionId)}/view";

    /// <summary>Disconnect leaves no screen, no open socket and no stream relayed by the control plane.</summary>
    private async Task DisconnectAsync(IPage page, string sessionId, ViewerSockets sockets)
    {
        await page.Locator("#disconnect").ClickAsync();
        await page.Locator("#overlay-message").Filter(new() { HasText = "Disconnected." }).WaitForAsync();
        (await page.EvaluateAsync<int>(ScreensJs)).ShouldBe(0, "noVNC screens under #screen after Disconnect");
        await WaitUntilAsync(() => sockets.Open == 0, TimeSpan.FromSeconds(10), () => $"the page's sockets closing; {sockets}");
        await WaitUntilAsync(() => cp.Streams(sessionId).Open == 0, TimeSpan.FromSeconds(10),
            () => $"no open stream on the control plane after Disconnect; it has {cp.Streams(sessionId)}");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Waited {timeout.TotalSeconds:0} s for {what()}");
            await Task.Delay(100);
        }
    }
}
