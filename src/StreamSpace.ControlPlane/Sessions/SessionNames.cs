using System.Security.Cryptography;

namespace StreamSpace.ControlPlane.Sessions;

/// <summary>Session ids: <c>{user}-{template}-{6 lowercase letters}</c> (design §4), readable in logs and URLs.</summary>
public static class SessionNames
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz";
    public const int SuffixLength = 6;

    public static string New(string username, string template) =>
        $"{username}-{template}-{RandomNumberGenerator.GetString(Alphabet, SuffixLength)}";
}
