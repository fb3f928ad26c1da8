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

    /// <summary>
    /// The configuration binder's "Failed to convert configuration value 'banana' at 'StreamSpace:CommandTtl' to type
    /// 'System.TimeSpan'." in an operator's words: "StreamSpace__CommandTtl must be a duration ([d.]hh:mm:ss, e.g. 00:10:00 or
    /// 30.00:00:00), got 'banana'" (the variable as it is set, and what it takes instead of a .NET type name). Any other
    /// message is kept as it is.
    /// </summary>
    public static string ConversionFailure(string binderMessage)
    {
        ArgumentNullException.ThrowIfNull(binderMessage);
        var m = System.Text.RegularExpressions.Regex.Match(binderMessage,
            @"\AFailed to convert configuration value '(?<value>.*)' at '(?<path>[^']+)' to type '(?<type>[^']+)'\.\z",
            System.Text.RegularExpressions.RegexOptions.Singleline);
        if (!m.Success) return binderMessage;
        var takes = m.Groups["type"].Value switch
        {
            "System.TimeSpan" => "a duration ([d.]hh:mm:ss, e.g. 00:10:00 or 30.00:00:00)",
            "System.Int32" or "System.Int64" or "System.Int16" => "a whole number",
            "System.Double" or "System.Single" or "System.Decimal" => "a number",
            "System.Boolean" => "true or false",
            var type => $"a value of type {type}",
        };
        return $"{m.Groups["path"].Value.Replace(":", "__", StringComparison.Ordinal)} must be {takes}, got '{m.Groups["value"].Value}'";
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
