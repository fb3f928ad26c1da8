using System.Text.Json;
using Microsoft.Playwright;

namespace StreamSpace.UiJourney.Tests.Infrastructure;

/// <summary>
/// Watches a page for movement while live updates arrive: after every DOM change (a MutationObserver, so no
/// update is missed however quick) it records the bounding boxes of the heading, the table header cells, every
/// session row and every action button; a <c>PerformanceObserver</c> sums the layout shifts (CLS) the browser saw.
/// </summary>
public static class LayoutProbe
{
    private const string InstallScript = """
        () => {
          window.__layout = { snapshots: [], cls: 0, shifts: [] };
          const snap = () => {
            const boxes = {};
            // Page coordinates: scrolling (the window, or a narrow table's own sideways scroll when a click
            // brings a button into view) is the user's doing, not the layout moving.
            const add = (key, el) => {
              const r = el.getBoundingClientRect();
              let x = r.x + window.scrollX, y = r.y + window.scrollY;
              for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) { x += a.scrollLeft; y += a.scrollTop; }
              boxes[key] = [x, y, r.width, r.height];
            };
            const h1 = document.querySelector('main h1'); if (h1) add('h1', h1);
            document.querySelectorAll('table.sessions thead th').forEach((th, i) => add('header ' + i, th));
            document.querySelectorAll('table.sessions tbody tr[data-session]').forEach(tr => {
              add('row ' + tr.dataset.session, tr);
              tr.querySelectorAll('td.actions a, td.actions button').forEach(b =>
                add('button ' + (b.getAttribute('aria-label') || b.textContent.trim()), b));
            });
            window.__layout.snapshots.push({
              states: [...document.querySelectorAll('tr[data-session]')].map(t => t.dataset.state).join(','),
              // A confirmation the user opened is their own doing, not a live update.
              userEditing: document.querySelector('.confirm') !== null,
              boxes });
          };
          snap();
          new MutationObserver(snap).observe(document.querySelector('main'),
            { subtree: true, childList: true, attributes: true, characterData: true });
          new PerformanceObserver(list => {
            for (const e of list.getEntries()) {
              if (e.hadRecentInput) continue;
              window.__layout.cls += e.value;
              window.__layout.shifts.push({ value: e.value, nodes: (e.sources || []).map(s => s.node ? (s.node.outerHTML || s.node.nodeName).slice(0, 120) : '?') });
            }
          }).observe({ type: 'layout-shift', buffered: true });
        }
        """;

    public static Task InstallAsync(IPage page) => page.EvaluateAsync(InstallScript);

    /// <summary>The states the page went through, the elements that moved (with where they were and went), and the CLS.</summary>
    public static async Task<LayoutReport> ReadAsync(IPage page, double tolerancePx = 0.5)
    {
        // As a string: the probe's own JSON, untouched by Playwright's value serialization.
        using var document = JsonDocument.Parse(await page.EvaluateAsync<string>("() => JSON.stringify(window.__layout)"));
        var json = document.RootElement;
        var firstSeen = new Dictionary<string, (double[] Box, string States)>();
        var moves = new List<string>();
        var states = new List<string>();
        var snapshots = 0;
        foreach (var snapshot in json.GetProperty("snapshots").EnumerateArray())
        {
            snapshots++;
            var stateList = snapshot.GetProperty("states").GetString() ?? "";
            if (states.Count == 0 || states[^1] != stateList) states.Add(stateList);
            if (snapshot.GetProperty("userEditing").GetBoolean()) continue;
            foreach (var element in snapshot.GetProperty("boxes").EnumerateObject())
            {
                var box = element.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
                if (!firstSeen.TryGetValue(element.Name, out var first))
                {
                    firstSeen[element.Name] = (box, stateList);
                    continue;
                }
                if (first.Box.Zip(box).Any(p => Math.Abs(p.First - p.Second) > tolerancePx))
                    moves.Add($"{element.Name}: [{string.Join(", ", first.Box)}] in '{first.States}' -> [{string.Join(", ", box)}] in '{stateList}'");
            }
        }
        var shifts = json.GetProperty("shifts").EnumerateArray().Select(s => s.ToString()).ToList();
        return new LayoutReport(snapshots, states, moves.Distinct().ToList(), json.GetProperty("cls").GetDouble(), shifts);
    }
}

public sealed record LayoutReport(int Snapshots, IReadOnlyList<string> States, IReadOnlyList<string> Moves, double Cls, IReadOnlyList<string> Shifts)
{
    public override string ToString() =>
        $"{Snapshots} snapshots; states: {string.Join(" → ", States)}; CLS {Cls}\nmoves:\n{string.Join("\n", Moves)}\nshifts:\n{string.Join("\n", Shifts)}";
}
