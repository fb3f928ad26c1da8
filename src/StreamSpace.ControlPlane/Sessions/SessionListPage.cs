using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>
/// Paging of <c>GET /api/v1/sessions</c>: newest first (<c>created_at</c>, then <c>id</c>, both descending), at most
/// <see cref="MaxLimit"/> per page, and a keyset cursor naming the last session of a page, so the next page starts
/// right after it however many sessions were created or ended in between (no offsets that skip or repeat rows).
/// The cursor is opaque to clients: base64url of "{created_at UTC ticks}.{id}".
/// </summary>
public static class SessionListPage
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 500;

    public static string Cursor(DateTimeOffset createdAt, string id) =>
        Base64Url.EncodeToString(Encoding.UTF8.GetBytes(
            createdAt.UtcTicks.ToString(CultureInfo.InvariantCulture) + "." + id));

    public static bool TryParseCursor(string cursor, out DateTimeOffset createdAt, out string id)
    {
        createdAt = default;
        id = "";
        if (cursor.Length is 0 or > 512 || !Base64Url.IsValid(cursor)) return false;
        var text = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(cursor));
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || dot == text.Length - 1 || !Data.StorableText.IsStorable(text)) return false;
        if (!long.TryParse(text.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
            || ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks) return false;
        createdAt = new DateTimeOffset(ticks, TimeSpan.Zero);
        id = text[(dot + 1)..];
        return true;
    }

    public static bool TryParseLimit(string? value, out int limit)
    {
        limit = DefaultLimit;
        if (value is null) return true;
        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out limit) && limit is >= 1 and <= MaxLimit;
    }
}
