using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>Why a login attempt was refused before the password was even checked.</summary>
public enum LoginThrottle { None, Username, Client }

/// <summary>
/// Limits login attempts per username and per client address (fixed one-minute windows), so a password
/// cannot be guessed quickly from one address nor against one account from many addresses. An IPv6 client counts by its
/// /64 network: one host usually holds a whole /64 and may pick any address in it for every attempt.
/// <para>
/// The counters live in memory, per replica, on purpose: with N replicas an attacker gets at most N times
/// the limit, which is still slow guessing, and no login needs a database write to be throttled.
/// System.Threading.RateLimiting's limiters read the system clock themselves (they take no
/// <see cref="TimeProvider"/>), so the windows here run on real time.
/// </para>
/// </summary>
public sealed class LoginRateLimiter : IDisposable
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly PartitionedRateLimiter<string> _byUsername;
    private readonly PartitionedRateLimiter<string> _byClient;

    public LoginRateLimiter(IOptions<StreamSpaceOptions> options)
    {
        _byUsername = PerKey(options.Value.LoginAttemptsPerUsernamePerMinute);
        _byClient = PerKey(options.Value.LoginAttemptsPerClientPerMinute);
    }

    /// <summary>Counts one attempt against both limits; when either is exhausted says which and for how long.</summary>
    public LoginThrottle TryAttempt(string username, System.Net.IPAddress? clientAddress, out TimeSpan retryAfter)
    {
        // The client limit is checked first so that spraying many usernames from one address is counted.
        using (var client = _byClient.AttemptAcquire(ClientKey(clientAddress)))
        {
            if (!client.IsAcquired)
            {
                retryAfter = RetryAfter(client);
                return LoginThrottle.Client;
            }
        }
        using (var user = _byUsername.AttemptAcquire(username.ToLowerInvariant()))
        {
            if (!user.IsAcquired)
            {
                retryAfter = RetryAfter(user);
                return LoginThrottle.Username;
            }
        }
        retryAfter = TimeSpan.Zero;
        return LoginThrottle.None;
    }

    /// <summary>An IPv4 address (also one mapped into IPv6) as it is; an IPv6 address by its first 64 bits.</summary>
    internal static string ClientKey(System.Net.IPAddress? address)
    {
        if (address is null) return "unknown";
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6) return address.ToString();
        var bytes = address.GetAddressBytes();
        Array.Clear(bytes, 8, 8);
        return new System.Net.IPAddress(bytes) + "/64";
    }

    private static PartitionedRateLimiter<string> PerKey(int permitsPerWindow) =>
        // The partitioned limiter drops a key's limiter once its window is full again and idle, so
        // memory stays bounded by the keys seen within about a minute.
        PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = permitsPerWindow,
            Window = Window,
            QueueLimit = 0,
            AutoReplenishment = true,
        }), StringComparer.Ordinal);

    private static TimeSpan RetryAfter(RateLimitLease lease) =>
        lease.TryGetMetadata(MetadataName.RetryAfter, out var after) && after > TimeSpan.Zero ? after : Window;

    public void Dispose()
    {
        _byUsername.Dispose();
        _byClient.Dispose();
    }
}
