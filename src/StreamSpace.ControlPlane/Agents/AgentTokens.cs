using System.Security.Cryptography;
using System.Text;

namespace StreamSpace.ControlPlane.Agents;

/// <summary>
/// Agent credentials: 256-bit random tokens shown once at creation; only their SHA-256 is stored.
/// A fast hash is right here (unlike passwords): the token has full entropy, so it cannot be guessed.
/// </summary>
public static class AgentTokens
{
    private const string Prefix = "ssa_";

    public static string Generate() => Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    public static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>Constant-time comparison of a presented token with a stored hash.</summary>
    public static bool Matches(string presentedToken, string storedHash)
    {
        var presented = Encoding.ASCII.GetBytes(Hash(presentedToken));
        var stored = Encoding.ASCII.GetBytes(storedHash);
        return CryptographicOperations.FixedTimeEquals(presented, stored);
    }
}

/// <summary>Values of <c>agents.status</c>.</summary>
public static class AgentStatus
{
    public const string Online = "online";
    public const string Offline = "offline";
}
