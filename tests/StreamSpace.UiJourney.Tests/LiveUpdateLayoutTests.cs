using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>
/// Live updates never move what the user is looking at: on "My sessions" a real xterm session goes
/// pending → starting → running → hibernating → hibernated → waking → running, pushed by the page's live refresh,
/// while the heading, header, row and action buttons stay where they were and the browser sees no layout shift.
/// </summary>
public sealed class LiveUpdateLayoutTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    private const string Password = "layout-user-password-1";
    private static readonly float SessionTimeoutMs = 90_000;

    [Theory]
    [InlineData(1280, 800, "wide")]
    [InlineData(390, 800, "narrow")]
    public async Task Session_state_changes_on_my_sessions_move_nothing(int width, int height, string label)
    {
        var username = "layout-" + label;
        using (var admin = await ApiScript.SignInAsync(cp.BaseAddress, "admin", ControlPlaneProcess.AdminPassword))
        {
            await admin.CreateUserAsync(username, Password);
            await admin.WaitForAgentOnlineAsync();
        }
        using var script = await ApiScript.SignInAsync(cp.BaseAddress, username, Password);

        await using var context = await chromium.NewContextAsync(cp.BaseAddress, width, height);
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "live-layout-" + label, async () =>
        {
            await page.GotoAsync("/sessions");
            await Pages.SignInAsync(page, username, Password);
            await Pages.WaitInteractiveAsync(page);
            await LayoutProbe.InstallAsync(page);

            // Created behind the page's back: everything after this arrives by live refresh.
            var id = await script.CreateSessionAsync("xterm");
            var row = page.Locator($"tr[data-session='{id}']");
            await row.WaitForAsync();
            await page.Locator($"tr[data-session='{id}'][data-state='running']").WaitForAsync(new() { Timeout = SessionTimeoutMs });
            await Chromium.ScreenshotAsync(page, $"live-{label}-running");

            await row.GetByRole(AriaRole.Button, new() { Name = $"Hibernate {id}" }).ClickAsync();
            await page.Locator($"tr[data-session='{id}'][data-state='hibernated']").WaitForAsync(new() { Timeout = SessionTimeoutMs });
            await Chromium.ScreenshotAsync(page, $"live-{label}-hibernated");

            await row.GetByRole(AriaRole.Button, new() { Name = $"Wake {id}" }).ClickAsync();
            await page.Locator($"tr[data-session='{id}'][data-state='running']").WaitForAsync(new() { Timeout = SessionTimeoutMs });
            // One more refresh with nothing new: ages tick, nothing else may change.
            await page.WaitForTimeoutAsync(2_500);

            var report = await LayoutProbe.ReadAsync(page);
            report.States.ShouldContain("running", report.ToString());
            report.States.ShouldContain("hibernated", report.ToString());
            // The transitional states (hibernating, waking) may pass between two refreshes; at least the
            // running → hibernated → running updates are always seen.
            report.States.Count.ShouldBeGreaterThanOrEqualTo(3, report.ToString());
            report.Moves.ShouldBeEmpty(report.ToString());
            report.Cls.ShouldBeLessThan(0.001, report.ToString());

            // Clean up through the UI (the confirmation is the user's own doing, so it is not measured).
            await row.GetByRole(AriaRole.Button, new() { Name = $"Terminate {id}" }).ClickAsync();
            await row.Locator(".confirm button.danger").ClickAsync();
            await row.WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 60_000 });
        });
    }
}
