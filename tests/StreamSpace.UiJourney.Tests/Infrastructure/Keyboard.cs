using Microsoft.Playwright;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>A keyboard-only user: Tab until a control has focus, checking that every control reached shows it.</summary>
public static class Keyboard
{
    /// <summary>Tabs far enough for any page here (top bar, sub-navigation, a card grid or a table).</summary>
    private const int MaxTabs = 80;

    /// <summary>What has focus, and an empty string when its focus is visible (else why it is not).</summary>
    private const string FocusCheckScript = """
        () => {
          const e = document.activeElement;
          if (!e || e === document.body) return { what: 'nothing', problem: 'nothing has focus' };
          const what = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
            (e.getAttribute('aria-label') ? `[aria-label="${e.getAttribute('aria-label')}"]` : '') + ' "' + (e.textContent || '').trim().slice(0, 40) + '"';
          const style = getComputedStyle(e);
          if (!e.matches(':focus-visible')) return { what, problem: 'does not match :focus-visible' };
          if (style.outlineStyle === 'none' || parseFloat(style.outlineWidth) < 1)
            return { what, problem: `no focus outline (outline: ${style.outlineStyle} ${style.outlineWidth})` };
          return { what, problem: '' };
        }
        """;

    /// <summary>Filled by Playwright from the script's result (it needs settable properties).</summary>
    public sealed class FocusState
    {
        public string What { get; set; } = "";
        public string Problem { get; set; } = "";
    }

    /// <summary>The focused control shows a visible focus outline.</summary>
    public static async Task<string> ShouldShowFocusAsync(IPage page)
    {
        var focus = await page.EvaluateAsync<FocusState>(FocusCheckScript);
        focus.Problem.ShouldBeEmpty($"{new Uri(page.Url).AbsolutePath}: {focus.What}");
        return focus.What;
    }

    /// <summary>
    /// Presses Tab until the element matching <paramref name="selector"/> has focus; every control passed on the
    /// way must show its focus too. Returns the controls reached, in order.
    /// </summary>
    public static async Task<IReadOnlyList<string>> TabToAsync(IPage page, string selector)
    {
        var reached = new List<string>();
        for (var i = 0; i < MaxTabs; i++)
        {
            await page.Keyboard.PressAsync("Tab");
            // Past the last control (or after the focused control went away, e.g. a terminated session's row)
            // Tab leaves the page for the browser's own controls; the next Tab comes back to the top.
            if (await page.EvaluateAsync<bool>("() => !document.activeElement || document.activeElement === document.body"))
            {
                reached.Add("(browser)");
                continue;
            }
            // After an in-app navigation the app moves focus to the new page's heading (for screen readers); it may
            // land between two Tabs. The heading is no control (not in the tab order) and needs no outline.
            if (await page.EvaluateAsync<bool>("() => document.activeElement.tabIndex < 0"))
            {
                reached.Add("(heading)");
                continue;
            }
            reached.Add(await ShouldShowFocusAsync(page));
            if (await page.EvaluateAsync<bool>("s => document.activeElement?.matches(s) ?? false", selector)) return reached;
        }
        throw new ShouldAssertException($"{selector} was not reached with {MaxTabs} Tabs on {page.Url}; reached: {string.Join(" → ", reached)}");
    }

    public static Task<bool> FocusedMatchesAsync(IPage page, string selector) =>
        page.EvaluateAsync<bool>("s => document.activeElement?.matches(s) ?? false", selector);
}
