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

    /// <summary>Nothing sticks out sideways: the page is readable without horizontal scrolling.</summary>
    public static Task<bool> FitsWidthAsync(IPage page) =>
        page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= window.innerWidth");
}
