using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace StreamSpace.Agent.Hosting;

/// <summary>
/// Names in a settings section that no setting has. The configuration binder skips them without a word, so a typo
/// (<c>StreamSpace__IdelTimeout</c>) or a guessed name (<c>StreamSpace__Data</c> for the data folder) left the setting at its
/// default while the operator believed it set: they are refused at start instead, with the nearest real name.
/// </summary>
public static class SettingNames
{
    /// <summary>One problem per name under <paramref name="section"/> that is neither a settable property of
    /// <paramref name="options"/> nor one of <paramref name="subsections"/> (read by other options).</summary>
    public static IReadOnlyList<string> Unknown(IConfigurationSection section, Type options, params string[] subsections)
    {
        ArgumentNullException.ThrowIfNull(section);
        ArgumentNullException.ThrowIfNull(options);
        var known = options.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.SetMethod is { IsPublic: true })
            .Select(p => p.Name)
            .Concat(subsections)
            .ToList();
        var problems = new List<string>();
        foreach (var child in section.GetChildren())
        {
            if (known.Contains(child.Key, StringComparer.OrdinalIgnoreCase)) continue;
            var nearest = known.Select(k => (Name: k, Distance: Distance(k, child.Key))).MinBy(c => c.Distance);
            // A near miss, or a part of a real name (StreamSpace__Data for DataFolder).
            var suggestion = nearest.Distance <= Math.Max(2, child.Key.Length / 3) ? nearest.Name
                : known.FirstOrDefault(k => k.Contains(child.Key, StringComparison.OrdinalIgnoreCase));
            problems.Add($"{EnvironmentName(section.Path, child.Key)} is not a setting" +
                         (suggestion is null ? "" : $" (did you mean {EnvironmentName(section.Path, suggestion)}?)"));
        }
        return problems;
    }

    /// <summary>The environment-variable spelling of a setting, as the README writes them: <c>StreamSpace__Web__X</c>.</summary>
    private static string EnvironmentName(string sectionPath, string key) => (sectionPath + ":" + key).Replace(":", "__", StringComparison.Ordinal);

    /// <summary>Levenshtein distance without regard to case.</summary>
    private static int Distance(string a, string b)
    {
        a = a.ToLowerInvariant();
        b = b.ToLowerInvariant();
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
