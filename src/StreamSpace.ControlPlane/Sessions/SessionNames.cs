using System.Security.Cryptography;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>Session ids: <c>{user}-{template}-{6 lowercase letters}</c> (design §4), readable in logs and URLs.</summary>
public static class SessionNames
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz";
    public const int SuffixLength = 6;
    /// <summary>
    /// Width of <c>sessions.id</c> (and of the <c>session_id</c> columns that refer to it). Usernames and template names are
    /// 64 at most, so a new id fits; an agent's report naming a longer one is malformed.
    /// </summary>
    public const int MaxIdLength = 200;

    public static string New(string username, string template) =>
        $"{username}-{template}-{RandomNumberGenerator.GetString(Alphabet, SuffixLength)}";
}
