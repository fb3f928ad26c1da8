using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// How a loop that uses the database every interval logs a database outage: one Warning without the stack when it
/// starts ("database unreachable: …; retrying every …"), Debug while it lasts, one Information "reachable again" on the
/// next success. Logged as an Error with its stack on every pass, a 20 s outage was 41 lines of 2–6 KB each, none of
/// them saying the database was away, and a day-long one hundreds of MB. Failures that are not an outage are left to the
/// loop, which logs them as before. One instance per loop; not thread-safe (a loop is one sequence of passes).
/// </summary>
/// <param name="loop">What the loop does, for the log lines ("command delivery", "heartbeat flush").</param>
/// <param name="retryEvery">The loop's interval, said in the warning.</param>
public sealed class DatabaseOutageLog(ILogger logger, TimeProvider time, string loop, TimeSpan retryEvery)
{
    public static readonly EventId DatabaseUnreachable = new(3041, nameof(DatabaseUnreachable));
    public static readonly EventId DatabaseReachable = new(3042, nameof(DatabaseReachable));

    private long? _since;
    private int _failures;

    /// <summary>True between an outage's first failure and the next <see cref="Succeeded"/>.</summary>
    public bool IsDown => _since is not null;

    /// <summary>
    /// Logs <paramref name="ex"/> if it is a database outage and returns true; returns false, logging nothing, for any other
    /// failure, which the caller logs itself.
    /// </summary>
    public bool Failed(Exception ex)
    {
        if (!ErrorHandling.IsDatabaseOutage(ex)) return false;
        _failures++;
        if (_since is null)
        {
            _since = time.GetTimestamp();
            logger.LogWarning(DatabaseUnreachable, "{Loop}: database unreachable: {Error}; retrying every {Interval}",
                loop, OneLine(ex), retryEvery);
        }
        else
        {
            logger.LogDebug(DatabaseUnreachable, "{Loop}: database still unreachable ({Failures} failures): {Error}",
                loop, _failures, OneLine(ex));
        }
        return true;
    }

    /// <summary>The loop reached the database: says so once if it had been unreachable.</summary>
    public void Succeeded()
    {
        if (_since is not { } since) return;
        logger.LogInformation(DatabaseReachable, "{Loop}: database reachable again after {Seconds:0} s ({Failures} failed passes)",
            loop, time.GetElapsedTime(since).TotalSeconds, _failures);
        _since = null;
        _failures = 0;
    }

    // Npgsql's outer message ("Exception while reading from stream") says less than the socket error under it.
    internal static string OneLine(Exception ex)
    {
        var inner = ex.InnerException is { Message.Length: > 0 } i && i.Message != ex.Message ? $" ({i.Message})" : "";
        return (ex.Message + inner).ReplaceLineEndings(" ");
    }
}
