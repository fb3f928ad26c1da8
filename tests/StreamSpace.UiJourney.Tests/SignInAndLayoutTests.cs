using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>Sign-in, sign-out and layout in real Chromium against the real control plane process.</summary>
public sealed class SignInAndLayoutTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    [Fact]
    public async Task A_keyboard_user_signs_in_returns_to_the_page_asked_for_and_signs_out()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();

        await page.GotoAsync("/sessions");
        page.Url.ShouldContain("/signin?returnUrl=%2Fsessions");
        (await page.Locator("#username").IsVisibleAsync()).ShouldBeTrue();
        await Chromium.ScreenshotAsync(page, "01-signin");

        await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);

        new Uri(page.Url).AbsolutePath.ShouldBe("/sessions");
        (await page.Locator("h1").InnerTextAsync()).ShouldBe("My sessions");
        var cookies = await context.CookiesAsync();
        var auth = cookies.Single(c => c.Name == "streamspace.auth");
        auth.HttpOnly.ShouldBeTrue();
        auth.SameSite.ShouldBe(SameSiteAttribute.Strict);
        (await page.EvaluateAsync<string>("() => document.cookie")).ShouldNotContain("streamspace.auth");

        await Pages.SignOutAsync(page);
        (await page.Locator(".notice").InnerTextAsync()).ShouldContain("You are signed out.");
        await page.GotoAsync("/");
        new Uri(page.Url).AbsolutePath.ShouldBe("/signin");
    }

    [Fact]
    public async Task A_wrong_password_is_said_in_words_on_the_sign_in_page()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        await page.GotoAsync("/signin");
        await page.Locator("#username").FillAsync("admin");
        await page.Locator("#password").FillAsync("certainly-wrong");
        await page.Locator("#password").PressAsync("Enter");
        // Any answer of the sign-in form, so that another one (rate, stale, missing, unavailable) fails here by its name.
        try
        {
            await page.WaitForURLAsync(url => url.Contains("error=", StringComparison.Ordinal));
        }
        catch (TimeoutException)
        {
            throw new ShouldAssertException($"the sign-in form did not answer with an error; the page is at {page.Url}; the control plane said:\n{RecentOutput()}");
        }
        page.Url.ShouldContain("error=invalid", Case.Sensitive, $"the sign-in form answered {page.Url}; the control plane said:\n{RecentOutput()}");
        (await page.Locator(".error").InnerTextAsync()).ShouldContain("The username or password is wrong");
        (await page.Locator("#username").InputValueAsync()).ShouldBe("admin");
        await Chromium.ScreenshotAsync(page, "02-signin-error");
    }

    private string RecentOutput() => cp.Output[^Math.Min(4000, cp.Output.Length)..];

    [Theory]
    [InlineData(1280, 800, "wide")]
    [InlineData(390, 800, "narrow")]
    public async Task Every_page_is_readable_without_sideways_scrolling(int width, int height, string label)
    {
        // A running session of admin's own, so the viewer is measured as it is used: toolbar and remote screen.
        string sessionId;
        using (var admin = await ApiScript.SignInAsync(cp.BaseAddress, "admin", ControlPlaneProcess.AdminPassword))
            sessionId = await admin.CreateSessionAsync("xterm");

        await using var context = await chromium.NewContextAsync(cp.BaseAddress, width, height);
        var page = await context.NewPageAsync();
        await page.GotoAsync("/signin");
        (await Pages.OutOfWidthAsync(page)).ShouldBeEmpty($"/signin fits a {width} px window");
        await Chromium.ScreenshotAsync(page, $"layout-{label}-signin");
        await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);

        foreach (var (path, name) in new[]
        {
            ("/", "catalog"), ("/sessions", "sessions"), ("/admin", "admin-agents"), ("/admin/sessions", "admin-sessions"),
            ("/admin/users", "admin-users"), ("/admin/templates", "admin-templates"), ("/admin/audit", "admin-audit"),
        })
        {
            await page.GotoAsync(path);
            await Pages.WaitInteractiveAsync(page);
            (await page.Locator("h1").CountAsync()).ShouldBeGreaterThan(0, $"{path} has a heading");
            (await Pages.OutOfWidthAsync(page)).ShouldBeEmpty($"{path} fits a {width} px window");
            await Chromium.ScreenshotAsync(page, $"layout-{label}-{name}");
        }

        // An unknown address: a plain server-rendered 404 page (no live circuit to wait for).
        await page.GotoAsync("/no-such-page");
        await page.Locator("h1").WaitForAsync();
        (await Pages.OutOfWidthAsync(page)).ShouldBeEmpty($"the not-found page fits a {width} px window");
        await Chromium.ScreenshotAsync(page, $"layout-{label}-not-found");

        // The template editor with a template open (the widest admin form).
        await page.GotoAsync("/admin/templates");
        await Pages.WaitInteractiveAsync(page);
        var firstTemplate = page.Locator("ul.list button").First;
        await firstTemplate.WaitForAsync();
        await firstTemplate.ClickAsync();
        await page.Locator("#yaml").WaitForAsync();
        (await Pages.OutOfWidthAsync(page)).ShouldBeEmpty($"the open template editor fits a {width} px window");
        await Chromium.ScreenshotAsync(page, $"layout-{label}-admin-template-open");

        // The viewer, connected to the running session.
        await page.GotoAsync($"/sessions/{Uri.EscapeDataString(sessionId)}/view");
        await page.Locator("#status").Filter(new() { HasText = "Connected" }).WaitForAsync(new() { Timeout = 90_000 });
        (await Pages.OutOfWidthAsync(page)).ShouldBeEmpty($"the viewer fits a {width} px window");
        await Chromium.ScreenshotAsync(page, $"layout-{label}-viewer");
    }
}
