using Microsoft.Playwright;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>Steps a user takes in the UI, shared by the journeys.</summary>
public static class Pages
{
    /// <summary>Signs in on the sign-in page as a keyboard user would: type, Tab, type, Enter.</summary>
    public static async Task SignInAsync(IPage page, string username, string password)
    {
        if (!page.Url.Contains("/signin", StringComparison.Ordinal)) await page.GotoAsync("/signin");
        await page.Locator("#username").FocusAsync();
        await page.Keyboard.TypeAsync(username);
        await page.Keyboard.PressAsync("Tab");
        await page.Keyboard.TypeAsync(password);
        await page.Keyboard.PressAsync("Enter");
        await page.WaitForURLAsync(url => !url.Contains("/signin", StringComparison.Ordinal));
    }

    public static async Task SignOutAsync(IPage page)
    {
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/signin", StringComparison.Ordinal));
    }

    /// <summary>Waits until the page's live (interactive) circuit is up, so clicks reach the server.</summary>
    public static Task WaitInteractiveAsync(IPage page) =>
        page.Locator("main[data-interactive='true']").WaitForAsync();

    /// <summary>
    /// Nothing sticks out sideways: the page is readable without horizontal scrolling, and no visible element lies
    /// (even partly) beyond the window's right edge where a page with <c>overflow: hidden</c> would simply cut it off.
    /// Elements inside a container that scrolls or clips on purpose (a wide table's own scroller, an ellipsis) and
    /// elements parked entirely off-screen on purpose (the skip link) are fine.
    /// </summary>
    public static async Task<bool> FitsWidthAsync(IPage page) =>
        (await OutOfWidthAsync(page)).Length == 0;

    /// <summary>What sticks out sideways (empty when nothing does), for the failure message.</summary>
    public static Task<string> OutOfWidthAsync(IPage page) =>
        page.EvaluateAsync<string>("""
            () => {
              const w = window.innerWidth;
              if (document.documentElement.scrollWidth > w) return `the page is ${document.documentElement.scrollWidth} px wide`;
              const out = [];
              for (const e of document.body.querySelectorAll('*')) {
                const r = e.getBoundingClientRect();
                if (r.width === 0 || r.height === 0 || r.right <= 0) continue;
                if (r.right <= w + 0.5 && r.left >= -0.5) continue;
                let contained = false;
                for (let a = e.parentElement; a && a !== document.body && a !== document.documentElement; a = a.parentElement) {
                  const ox = getComputedStyle(a).overflowX;
                  if (ox !== 'visible') { contained = true; break; }
                }
                if (!contained) out.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''} [${Math.round(r.left)}..${Math.round(r.right)}]`);
              }
              return out.slice(0, 10).join(', ');
            }
            """);
}
