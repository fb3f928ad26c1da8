using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.RegularExpressions;

namespace StreamSpace.Protocol;

/// <summary>
/// Kubernetes-style resource quantities, the form a session's <c>resources{cpu, memory}</c> take on every
/// runtime (the control plane validates them, the agent enforces them): cpu as cores or millicores (<c>250m</c>, <c>1</c>, <c>1.5</c>), memory as bytes with an
/// optional binary (<c>Ki Mi Gi Ti</c>) or decimal (<c>k K M G T</c>) suffix. Values that no worker
/// could honour (more than <see cref="MaxCpuMillis"/> or <see cref="MaxMemoryBytes"/>) are refused
/// up front rather than left to fail on an agent.
/// </summary>
public static partial class ResourceQuantity
{
    /// <summary>64 cores.</summary>
    public const long MaxCpuMillis = 64_000;
    /// <summary>256 GiB.</summary>
    public const long MaxMemoryBytes = 256L * 1024 * 1024 * 1024;
    /// <summary>Longest quantity taken: the width of the control plane's <c>sessions.cpu</c> and <c>sessions.memory</c>.</summary>
    public const int MaxLength = 32;

    [GeneratedRegex(@"^(?<n>[0-9]+(\.[0-9]+)?)(?<unit>m?)\z", RegexOptions.CultureInvariant)]
    private static partial Regex CpuPattern();

    [GeneratedRegex(@"^(?<n>[0-9]+(\.[0-9]+)?)(?<unit>Ki|Mi|Gi|Ti|k|K|M|G|T)?\z", RegexOptions.CultureInvariant)]
    private static partial Regex MemoryPattern();

    public static bool TryParseCpu(string? text, out long millicores, [NotNullWhen(false)] out string? error)
    {
        millicores = 0;
        if (!TryMatch(text, CpuPattern(), "a CPU quantity such as 250m, 0.5, 1 or 1.5", out var number, out var unit, out error))
            return false;
        if (number > MaxCpuMillis)
            return Fail($"must be at most {MaxCpuMillis / 1000} cores", out error);
        var millis = unit == "m" ? number : number * 1000m;
        if (millis != decimal.Truncate(millis))
            return Fail("is finer than 1 millicore (1m)", out error);
        if (millis <= 0)
            return Fail("must be more than zero", out error);
        if (millis > MaxCpuMillis)
            return Fail($"must be at most {MaxCpuMillis / 1000} cores", out error);
        millicores = (long)millis;
        return true;
    }

    public static bool TryParseMemory(string? text, out long bytes, [NotNullWhen(false)] out string? error)
    {
        bytes = 0;
        if (!TryMatch(text, MemoryPattern(), "a memory quantity such as 512Mi, 2Gi, 1G or a number of bytes", out var number, out var unit, out error))
            return false;
        decimal multiplier = unit switch
        {
            "Ki" => 1L << 10,
            "Mi" => 1L << 20,
            "Gi" => 1L << 30,
            "Ti" => 1L << 40,
            "k" or "K" => 1_000L,
            "M" => 1_000_000L,
            "G" => 1_000_000_000L,
            "T" => 1_000_000_000_000L,
            _ => 1L,
        };
        // Bytes never exceed the limit when the number alone does not, so this check keeps the product in range.
        if (number > MaxMemoryBytes)
            return Fail("must be at most 256Gi", out error);
        var value = decimal.Ceiling(number * multiplier);
        if (value <= 0)
            return Fail("must be more than zero", out error);
        if (value > MaxMemoryBytes)
            return Fail("must be at most 256Gi", out error);
        bytes = (long)value;
        return true;
    }

    public static bool IsValidCpu(string? text) => TryParseCpu(text, out _, out _);
    public static bool IsValidMemory(string? text) => TryParseMemory(text, out _, out _);

    private static bool TryMatch(string? text, Regex pattern, string expected, out decimal number, out string unit, [NotNullWhen(false)] out string? error)
    {
        number = 0;
        unit = "";
        if (string.IsNullOrWhiteSpace(text))
            return Fail($"is required: {expected}", out error);
        if (text.Length > MaxLength)
            return Fail($"must be at most {MaxLength} characters: {expected}", out error);
        var match = pattern.Match(text);
        if (!match.Success || !decimal.TryParse(match.Groups["n"].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out number))
            return Fail($"'{text}' is not {expected}", out error);
        unit = match.Groups["unit"].Value;
        error = null;
        return true;
    }

    private static bool Fail(string message, out string error)
    {
        error = message;
        return false;
    }
}
