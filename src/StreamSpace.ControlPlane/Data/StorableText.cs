namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Text both databases store alike. PostgreSQL refuses the character U+0000 in any text value, parameters included
/// ("invalid byte sequence for encoding UTF8: 0x00", SQLSTATE 22021), while SQLite keeps it: input carrying it is
/// refused where it enters, so the answer is the same 400 on either database and it never reaches a statement shared
/// with other callers (a group-committed batch fails as a whole).
/// </summary>
public static class StorableText
{
    /// <summary>What a refused field is told, after its name.</summary>
    public const string Problem = "must not contain the character U+0000 (NUL)";

    public static bool IsStorable(string? text) => text is null || !text.Contains('\0');

    /// <summary>
    /// Free text that only describes something (an agent's error or crash reason, which may quote an app's own output):
    /// U+0000 replaced by U+FFFD, so the report is kept instead of refused.
    /// </summary>
    public static string? Clean(string? text) => IsStorable(text) ? text : text!.Replace('\0', '\uFFFD');

    /// <summary>
    /// Free text cut to a column's width (<c>varchar(n)</c>: PostgreSQL refuses longer text, SQLite stores it), never
    /// inside a surrogate pair: half a pair is no text either database takes alike (Npgsql cannot encode it and fails the
    /// statement, SQLite stores U+FFFD).
    /// </summary>
    public static string Truncate(string text, int maxLength) => Protocol.TextLength.Cut(text, maxLength);
}
