using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>The administration forms in real Chromium against the real control plane: what a save sends and what a refusal leaves on screen.</summary>
public sealed class AdminEditingTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    [Fact]
    public async Task A_built_in_template_opened_and_saved_unchanged_is_saved()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "admin-template-save-unchanged", async () =>
        {
            await page.GotoAsync("/admin/templates");
            await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
            await Pages.WaitInteractiveAsync(page);

            // The API answers the catalog's bookkeeping (builtin, createdAt, updatedAt) beside the definition.
            await page.Locator("ul.list button").Filter(new() { HasText = "xterm" }).ClickAsync();
            await page.Locator("h3").Filter(new() { HasText = "xterm" }).WaitForAsync();
            (await page.Locator("#yaml").InputValueAsync()).ShouldContain("name: xterm");
            await page.GetByRole(AriaRole.Button, new() { Name = "Save", Exact = true }).ClickAsync();

            await page.Locator("#yaml-errors .error, .notice").First.WaitForAsync();
            (await page.Locator("#yaml-errors").InnerTextAsync()).ShouldBeEmpty();
            (await page.Locator(".notice").InnerTextAsync()).ShouldBe("Saved.");
            await Chromium.ScreenshotAsync(page, "admin-template-saved-unchanged");
        });
    }
}
