using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>Why a login attempt was refused before the password was even checked.</summary>
public enum LoginThrottle { None, Username, Client }

/// <summary>
/// Limits login attempts per username and per client address (fixed one-minute windows, each starting at a key's first
/// attempt), so a password cannot be guessed quickly from one address nor against one account from many addresses. An
/// IPv6 client counts by its /64 network: one host usually holds a whole /64 and may pick any address in it for every
/// attempt. A refused attempt is told when its window ends (<c>Retry-After</c>), not a whole window from now.
/// <para>
/// The counters live in memory, per replica, on purpose: with N replicas an attacker gets at most N times
/// the limit, which is still slow guessing, and no login needs a database write to be throttled. They run on the app's
/// <see cref="TimeProvider"/> (System.Threading.RateLimiting's limiters, used before, read the system clock and report
/// only the whole window as the time to wait).
/// </para>
/// </summary>
public sealed class LoginRateLimiter(IOptions<StreamSpaceOptions> options, TimeProvider time)
{
    internal static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly FixedWindows _byUsername = new(options.Value.LoginAttemptsPerUsernamePerMinute, time);
    private readonly FixedWindows _byClient = new(options.Value.LoginAttemptsPerClientPerMinute, time);

    /// <summary>Counts one attempt against both limits; when either is exhausted says which and for how long.</summary>
    public LoginThrottle TryAttempt(string username, System.Net.IPAddress? clientAddress, out TimeSpan retryAfter)
    {
        // The client limit is checked first so that spraying many usernames from one address is counted.
        if (!_byClient.TryCount(ClientKey(clientAddress), out retryAfter)) return LoginThrottle.Client;
        if (!_byUsername.TryCount(username.ToLowerInvariant(), out retryAfter)) return LoginThrottle.Username;
        return LoginThrottle.None;
    }

    /// <summary>Keys counted now (windows not yet swept away), for tests.</summary>
    internal int TrackedKeys => _byUsername.Count + _byClient.Count;

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

    /// <summary>
    /// At most <c>limit</c> attempts per key in a window of <see cref="Window"/> that starts at the key's first attempt.
    /// Keys whose window has ended are swept away at most once a window, on an attempt, so memory stays bounded by the
    /// keys seen within about two windows.
    /// </summary>
    private sealed class FixedWindows(int limit, TimeProvider time)
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Counter> _counters = new(StringComparer.Ordinal);
        private long _lastSweep = time.GetTimestamp();

        public int Count => _counters.Count;

        public bool TryCount(string key, out TimeSpan retryAfter)
        {
            var now = time.GetTimestamp();
            SweepIfDue(now);
            while (true)
            {
                var counter = _counters.GetOrAdd(key, static _ => new Counter());
                lock (counter)
                {
                    // Swept away between the lookup and the lock: count in the key's new counter instead.
                    if (counter.Removed) continue;
                    var elapsed = time.GetElapsedTime(counter.Start, now);
                    if (counter.Attempts == 0 || elapsed >= Window || elapsed < TimeSpan.Zero)
                    {
                        counter.Start = now;
                        counter.Attempts = 0;
                        elapsed = TimeSpan.Zero;
                    }
                    if (counter.Attempts < limit)
                    {
                        counter.Attempts++;
                        retryAfter = TimeSpan.Zero;
                        return true;
                    }
                    retryAfter = Window - elapsed;
                    return false;
                }
            }
        }

        private void SweepIfDue(long now)
        {
            var last = Interlocked.Read(ref _lastSweep);
            if (time.GetElapsedTime(last, now) < Window || Interlocked.CompareExchange(ref _lastSweep, now, last) != last) return;
            foreach (var (key, counter) in _counters)
            {
                lock (counter)
                {
                    if (time.GetElapsedTime(counter.Start, now) < Window) continue;
                    counter.Removed = true;
                    _counters.TryRemove(KeyValuePair.Create(key, counter));
                }
            }
        }

        private sealed class Counter
        {
            public long Start;
            public int Attempts;
            public bool Removed;
        }
    }
}
