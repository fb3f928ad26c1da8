using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>The control plane process with sign-ins that last seconds, so they expire while the test watches.</summary>
public sealed class ShortSignInControlPlane : ControlPlaneProcess
{
    public static readonly TimeSpan SignInLifetime = TimeSpan.FromSeconds(15);

    protected override IReadOnlyDictionary<string, string> ExtraEnvironment { get; } = new Dictionary<string, string>
    {
        ["StreamSpace__TokenLifetime"] = SignInLifetime.ToString("c", System.Globalization.CultureInfo.InvariantCulture),
    };
}

/// <summary>
/// A sign-in that expires while a live page is open sends the browser to the sign-in page, which says so, and
/// signing in again returns to that page.
/// </summary>
public sealed class ExpiredSignInTests(ShortSignInControlPlane cp, Chromium chromium) : IClassFixture<ShortSignInControlPlane>, IClassFixture<Chromium>
{
    // The sign-in's lifetime plus the API's allowance for clock skew between replicas (30 s), plus slack.
    private static readonly float ExpiryWaitMs = (float)(ShortSignInControlPlane.SignInLifetime + TimeSpan.FromSeconds(60)).TotalMilliseconds;

    [Fact]
    public async Task An_open_page_whose_sign_in_expires_goes_to_the_sign_in_page_and_back()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "expired-sign-in", async () =>
        {
            await page.GotoAsync("/sessions");
            await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
            await Pages.WaitInteractiveAsync(page);
            new Uri(page.Url).AbsolutePath.ShouldBe("/sessions");

            // Nobody touches the page: its live refresh meets the expired sign-in and hands over to the sign-in page.
            await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/signin", new() { Timeout = ExpiryWaitMs });
            page.Url.ShouldContain("returnUrl=%2Fsessions");
            (await page.Locator(".notice").InnerTextAsync()).ShouldContain("Your sign-in has expired");
            await Chromium.ScreenshotAsync(page, "expired-01-signin");

            await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
            new Uri(page.Url).AbsolutePath.ShouldBe("/sessions");
            (await page.Locator("h1").InnerTextAsync()).ShouldBe("My sessions");
        });
    }
}
