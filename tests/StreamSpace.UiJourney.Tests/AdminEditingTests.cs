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

    [Fact]
    public async Task A_refused_role_or_quota_change_shows_the_value_the_server_kept()
    {
        await using var context = await chromium.NewContextAsync(cp.BaseAddress);
        var page = await context.NewPageAsync();
        await Chromium.StepAsync(page, "admin-user-refused-change", async () =>
        {
            await page.GotoAsync("/admin/users");
            await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
            await Pages.WaitInteractiveAsync(page);
            var role = page.GetByLabel("Role of admin", new() { Exact = true });
            var quota = page.GetByLabel("Session quota of admin", new() { Exact = true });
            var kept = await quota.InputValueAsync();
            var rowError = page.Locator("tr.row-error");

            // Nobody changes their own role: the API answers 403 and the select goes back to what the server kept.
            await role.SelectOptionAsync("user");
            await rowError.WaitForAsync();
            (await rowError.InnerTextAsync()).ShouldContain("Nobody changes their own role");
            await Expect(role, "admin");

            // Beyond the API's limit (1000): 400, and the input goes back to the quota the server kept.
            await quota.FillAsync("5000");
            await quota.PressAsync("Tab");
            await page.Locator("tr.row-error").Filter(new() { HasText = "maxSessions" }).WaitForAsync();
            await Expect(quota, kept);
            // The role is still shown as kept after this second reload.
            (await role.InputValueAsync()).ShouldBe("admin");
            await Chromium.ScreenshotAsync(page, "admin-user-refused-change");
        });
    }

    /// <summary>The control's value in the browser becomes <paramref name="value"/> (the reload after the refusal is a moment later).</summary>
    private static async Task Expect(ILocator control, string value)
    {
        try
        {
            await Assertions.Expect(control).ToHaveValueAsync(value, new() { Timeout = 10_000 });
        }
        catch (PlaywrightException ex)
        {
            throw new ShouldAssertException($"the control shows '{await control.InputValueAsync()}', not the server's '{value}': {ex.Message}");
        }
    }
}
