using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;
using Keys = StreamSpace.UiJourney.Tests.Infrastructure.Keyboard;

namespace StreamSpace.UiJourney.Tests;

/// <summary>
/// The UI works with the keyboard alone (page.Keyboard: Tab, Enter, Space), and every control reached shows
/// where the focus is: sign in, launch xterm from the catalog, terminate with the inline
/// confirmation, and find the way through administration.
/// </summary>
public sealed class KeyboardTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    private static readonly float SessionStartTimeoutMs = 90_000;

    [Fact]
    public async Task A_keyboard_user_signs_in_launches_terminates_and_reaches_administration()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "keyboard", async () =>
        {
            // Sign in: the username field has focus on arrival; Tab to the password and the button.
            await page.GotoAsync("/signin");
            (await Keys.FocusedMatchesAsync(page, "#username")).ShouldBeTrue("the username field has focus on arrival");
            await page.Keyboard.TypeAsync("admin");
            await Keys.TabToAsync(page, "#password");
            await page.Keyboard.TypeAsync(ControlPlaneProcess.AdminPassword);
            await Keys.TabToAsync(page, "form button[type='submit']");
            await Chromium.ScreenshotAsync(page, "kbd-01-signin-button");
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/");
            await Pages.WaitInteractiveAsync(page);

            // Catalog: Tab to xterm's Launch button, Enter launches and opens the viewer.
            await page.Locator("article[aria-labelledby='t-xterm']").WaitForAsync();
            var toLaunch = await Keys.TabToAsync(page, "article[aria-labelledby='t-xterm'] button.primary");
            await Chromium.ScreenshotAsync(page, "kbd-02-launch-focused");
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForURLAsync(new System.Text.RegularExpressions.Regex("/sessions/[^/]+/view"), new() { Timeout = SessionStartTimeoutMs });
            var sessionId = Uri.UnescapeDataString(new Uri(page.Url).AbsolutePath.Split('/')[2]);

            // The viewer hands the keyboard to the remote desktop once connected (noVNC takes the focus, and Tab
            // belongs to the session), so the keyboard user leaves it through the address bar.
            await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 30_000 });
            await Chromium.ScreenshotAsync(page, "kbd-03-viewer");
            await page.GotoAsync("/sessions");
            await Pages.WaitInteractiveAsync(page);

            // My sessions: Tab to Terminate, Space opens the confirmation and focus moves onto its confirm button.
            var row = page.Locator($"tr[data-session='{sessionId}']");
            await row.WaitForAsync();
            await Keys.TabToAsync(page, $"button[aria-label='Terminate {sessionId}']");
            await page.Keyboard.PressAsync("Space");
            await row.Locator(".confirm").WaitForAsync();
            await page.WaitForFunctionAsync("() => document.activeElement?.matches('.confirm button.danger')");
            await Keys.ShouldShowFocusAsync(page);
            await Chromium.ScreenshotAsync(page, "kbd-04-confirm-focused");
            await page.Keyboard.PressAsync("Enter");
            await row.WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 60_000 });

            // Administration: the top bar's link, then the sub-navigation to Users.
            await Keys.TabToAsync(page, "header nav a[href='admin'], header nav a[href='/admin']");
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/admin");
            await Pages.WaitInteractiveAsync(page);
            await Keys.TabToAsync(page, "nav.subnav a[href='admin/users'], nav.subnav a[href='/admin/users']");
            await Chromium.ScreenshotAsync(page, "kbd-05-admin-subnav-focused");
            await page.Keyboard.PressAsync("Enter");
            await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/admin/users");
            await page.Locator("#new-username").WaitForAsync();
            await Keys.TabToAsync(page, "#new-username");

            toLaunch.Count.ShouldBeGreaterThan(1, "the Launch button is reached past the navigation, each with visible focus");
        });
    }
}
