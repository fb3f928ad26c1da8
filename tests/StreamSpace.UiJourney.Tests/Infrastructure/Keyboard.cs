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
          if (!e || e === document.body) return { kind: 'browser', what: 'nothing', problem: 'nothing has focus' };
          if (e.tabIndex < 0) return { kind: 'heading', what: e.tagName.toLowerCase(), problem: '' };
          const what = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
            (e.getAttribute('aria-label') ? `[aria-label="${e.getAttribute('aria-label')}"]` : '') + ' "' + (e.textContent || '').trim().slice(0, 40) + '"';
          const style = getComputedStyle(e);
          if (!e.matches(':focus-visible')) return { kind: 'control', what, problem: 'does not match :focus-visible' };
          if (style.outlineStyle === 'none' || parseFloat(style.outlineWidth) < 1)
            return { kind: 'control', what, problem: `no focus outline (outline: ${style.outlineStyle} ${style.outlineWidth})` };
          return { kind: 'control', what, problem: '' };
        }
        """;

    /// <summary>Filled by Playwright from the script's result (it needs settable properties).</summary>
    public sealed class FocusState
    {
        /// <summary>browser (nothing on the page has focus), heading (not in the tab order) or control.</summary>
        public string Kind { get; set; } = "";
        public string What { get; set; } = "";
        public string Problem { get; set; } = "";
    }

    /// <summary>The focused control shows a visible focus outline.</summary>
    public static async Task<string> ShouldShowFocusAsync(IPage page)
    {
        var focus = await page.EvaluateAsync<FocusState>(FocusCheckScript);
        focus.Kind.ShouldNotBe("heading", $"{new Uri(page.Url).AbsolutePath}: a heading, not a control, has focus");
        return ShouldShow(page, focus);
    }

    private static string ShouldShow(IPage page, FocusState focus)
    {
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
            // One evaluation decides what has focus and checks it: after an in-app navigation the app moves focus to
            // the new page's heading (for screen readers), and it may do so at any moment, also between two separate
            // checks (a control was seen, then the heading was measured for an outline it does not need).
            var focus = await page.EvaluateAsync<FocusState>(FocusCheckScript);
            // Past the last control (or after the focused control went away, e.g. a terminated session's row)
            // Tab leaves the page for the browser's own controls; the next Tab comes back to the top.
            if (focus.Kind == "browser")
            {
                reached.Add("(browser)");
                continue;
            }
            // The heading is no control (not in the tab order) and needs no outline.
            if (focus.Kind == "heading")
            {
                reached.Add("(heading)");
                continue;
            }
            reached.Add(ShouldShow(page, focus));
            if (await page.EvaluateAsync<bool>("s => document.activeElement?.matches(s) ?? false", selector)) return reached;
        }
        throw new ShouldAssertException($"{selector} was not reached with {MaxTabs} Tabs on {page.Url}; reached: {string.Join(" → ", reached)}");
    }

    public static Task<bool> FocusedMatchesAsync(IPage page, string selector) =>
        page.EvaluateAsync<bool>("s => document.activeElement?.matches(s) ?? false", selector);
}
