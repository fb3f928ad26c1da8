using System.Globalization;

namespace StreamSpace.ControlPlane.Web.Components.Shared;

/// <summary>Ages in words ("3 min", "2 h 5 min"), short enough for a table cell.</summary>
public static class Ago
{
    public static string Format(DateTimeOffset? at, DateTimeOffset now)
    {
        if (at is null) return "—";
        var span = now - at.Value;
        if (span < TimeSpan.Zero) span = TimeSpan.Zero;
        return span.TotalSeconds < 60 ? $"{(int)span.TotalSeconds} s"
            : span.TotalMinutes < 60 ? $"{(int)span.TotalMinutes} min"
            : span.TotalHours < 24 ? $"{(int)span.TotalHours} h {span.Minutes} min"
            : $"{(int)span.TotalDays} d {span.Hours} h";
    }

    public static string Timestamp(DateTimeOffset? at) =>
        at?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture) ?? "";
}
