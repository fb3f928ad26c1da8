using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using StreamSpace.UiJourney.Tests.Infrastructure;

namespace StreamSpace.UiJourney.Tests;

/// <summary>
/// The whole journey of issue 5 in real Chromium against the real control plane process with its embedded
/// agent: admin creates alice; alice launches xterm, sees it in the viewer, terminates it; alice is kept out of
/// administration and of other users' viewers; admin sees the agent online and alice's session history.
/// </summary>
public sealed class UserJourneyTests(ControlPlaneProcess cp, Chromium chromium) : IClassFixture<ControlPlaneProcess>, IClassFixture<Chromium>
{
    private const string AlicePassword = "alice-journey-password-1";
    private static readonly float SessionStartTimeoutMs = 90_000;

    [Fact]
    public async Task Admin_creates_alice_who_launches_views_and_terminates_xterm_and_admin_sees_the_history()
    {
        // Admin signs in, creates alice, signs out.
        await using (var adminContext = await chromium.NewContextAsync(cp.BaseAddress))
        {
            var page = await adminContext.NewPageAsync();
            await Chromium.StepAsync(page, "admin-creates-alice", async () =>
            {
                await page.GotoAsync("/admin/users");
                await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
                new Uri(page.Url).AbsolutePath.ShouldBe("/admin/users");
                await Pages.WaitInteractiveAsync(page);
                await page.Locator("#new-username").FillAsync("alice");
                await page.Locator("#new-password").FillAsync(AlicePassword);
                await page.GetByRole(AriaRole.Button, new() { Name = "Create user" }).ClickAsync();
                await page.Locator(".notice").Filter(new() { HasText = "alice" }).WaitForAsync();
                await page.Locator("tr[data-user='alice']").WaitForAsync();
                await Chromium.ScreenshotAsync(page, "10-admin-users");
                await Pages.SignOutAsync(page);
            });
        }

        // Another user's session, for the "cannot open someone else's viewer" check.
        var adminSessionId = await CreateSessionAsAdminAsync();

        var aliceSessionId = "";
        await using (var aliceContext = await chromium.NewContextAsync(cp.BaseAddress))
        {
            var page = await aliceContext.NewPageAsync();
            await Chromium.StepAsync(page, "alice", async () =>
            {
                await page.GotoAsync("/");
                await Pages.SignInAsync(page, "alice", AlicePassword);
                await Pages.WaitInteractiveAsync(page);
                await page.Locator("article[aria-labelledby='t-xterm']").WaitForAsync();
                await Chromium.ScreenshotAsync(page, "11-catalog");

                // Launch xterm: progress, then the viewer.
                await page.Locator("article[aria-labelledby='t-xterm'] button.primary").ClickAsync();
                await page.Locator(".launch").WaitForAsync();
                await Chromium.ScreenshotAsync(page, "12-launch-progress");
                await page.WaitForURLAsync(new System.Text.RegularExpressions.Regex("/sessions/[^/]+/view"), new() { Timeout = SessionStartTimeoutMs });
                aliceSessionId = Uri.UnescapeDataString(new Uri(page.Url).AbsolutePath.Split('/')[2]);
                aliceSessionId.ShouldStartWith("alice-xterm-");

                // The viewer shows the terminal: a noVNC canvas with something drawn on it.
                var canvas = page.Locator("canvas").First;
                await canvas.WaitForAsync(new() { Timeout = 30_000 });
                await page.WaitForFunctionAsync(
                    "() => { const c = document.querySelector('canvas'); if (!c || c.width === 0) return false; " +
                    "const d = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data; if (!d) return true; " +
                    "for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2]) return true; return false; }",
                    null, new() { Timeout = 30_000 });
                await Chromium.ScreenshotAsync(page, "13-viewer");

                // Back to my sessions (the viewer's toolbar), terminate with confirmation, and it disappears.
                await page.Locator("#back").ClickAsync();
                await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/sessions");
                await Pages.WaitInteractiveAsync(page);
                var row = page.Locator($"tr[data-session='{aliceSessionId}']");
                await row.WaitForAsync();
                (await row.GetAttributeAsync("data-state")).ShouldBe("running");
                await Chromium.ScreenshotAsync(page, "14-my-sessions");
                await row.GetByRole(AriaRole.Button, new() { Name = $"Terminate {aliceSessionId}" }).ClickAsync();
                await row.Locator(".confirm button.danger").ClickAsync();
                await row.WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 60_000 });

                // Alice cannot open administration...
                await page.GotoAsync("/admin");
                new Uri(page.Url).AbsolutePath.ShouldBe("/denied");
                (await page.Locator("h1").InnerTextAsync()).ShouldBe("Not allowed");
                await Chromium.ScreenshotAsync(page, "15-alice-denied-admin");

                // ...nor another user's viewer: to alice that session does not exist.
                await page.GotoAsync($"/sessions/{Uri.EscapeDataString(adminSessionId)}/view");
                await page.Locator("#overlay-message").Filter(new() { HasText = "does not exist" }).WaitForAsync();
                (await page.Locator("canvas").CountAsync()).ShouldBe(0);
                await Chromium.ScreenshotAsync(page, "16-alice-foreign-viewer");
            });
        }

        // Admin sees the embedded agent online and alice's session history.
        await using (var adminContext = await chromium.NewContextAsync(cp.BaseAddress))
        {
            var page = await adminContext.NewPageAsync();
            await Chromium.StepAsync(page, "admin-history", async () =>
            {
                await page.GotoAsync("/admin");
                await Pages.SignInAsync(page, "admin", ControlPlaneProcess.AdminPassword);
                await Pages.WaitInteractiveAsync(page);
                var agent = page.Locator("tr[data-agent]").First;
                await agent.WaitForAsync();
                (await agent.GetAttributeAsync("data-status")).ShouldBe("online");
                await Chromium.ScreenshotAsync(page, "17-admin-agents");

                await page.GotoAsync("/admin/sessions?user=alice");
                await Pages.WaitInteractiveAsync(page);
                var history = page.Locator($"tr[data-session='{aliceSessionId}']");
                await history.WaitForAsync();
                (await history.GetAttributeAsync("data-state")).ShouldBeOneOf("terminating", "terminated");
                await Chromium.ScreenshotAsync(page, "18-admin-sessions-alice");

                await page.GotoAsync("/admin/audit");
                await page.Locator("table.audit tbody tr").First.WaitForAsync();
                await Chromium.ScreenshotAsync(page, "19-admin-audit");
            });
        }
    }

    /// <summary>Scripts keep using the API's bearer tokens: the admin's own session, created over HTTP.</summary>
    private async Task<string> CreateSessionAsAdminAsync()
    {
        using var http = new HttpClient { BaseAddress = cp.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        using var login = await http.PostAsJsonAsync("api/v1/auth/login", new { username = "admin", password = ControlPlaneProcess.AdminPassword });
        login.EnsureSuccessStatusCode();
        var token = (await login.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        // The embedded agent dials in shortly after the control plane is ready: 503 until then.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            using var created = await http.PostAsJsonAsync("api/v1/sessions", new { template = "xterm" });
            if (created.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
                continue;
            }
            created.StatusCode.ShouldBe(System.Net.HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
            return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        }
    }
}
