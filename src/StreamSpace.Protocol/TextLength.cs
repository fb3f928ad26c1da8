namespace StreamSpace.Protocol;

/// <summary>Text cut to a length, shared by the control plane (its columns) and the agent (what it reports).</summary>
public static class TextLength
{
    /// <summary>
    /// <paramref name="text"/> cut to at most <paramref name="maxLength"/> UTF-16 characters, never inside a surrogate pair:
    /// half a pair is no text either database takes alike (Npgsql cannot encode it, SQLite stores U+FFFD), nor valid JSON text.
    /// </summary>
    public static string Cut(string text, int maxLength) =>
        text.Length <= maxLength ? text : text[..(char.IsHighSurrogate(text[maxLength - 1]) ? maxLength - 1 : maxLength)];
}
