namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// How API requests that fail because the database is unreachable are logged: one Warning without the stack (the path
/// and the driver's reason on one line) at most every <see cref="WarnEvery"/>, the rest at Debug; each warning says how
/// many failures were at Debug since the one before. Logged with its stack on every request, a busy API filled the log
/// during an outage with one 2–6 KB trace per request, all the same. The requests' answers (503) are not affected.
/// One instance for the app; safe for concurrent requests.
/// </summary>
public sealed class RequestOutageLog(ILoggerFactory loggers, TimeProvider time)
{
    public static readonly EventId DatabaseUnavailable = new(3043, nameof(DatabaseUnavailable));

    /// <summary>Often enough that a log tail shows an outage still going on, seldom enough that load cannot flood it.</summary>
    public static readonly TimeSpan WarnEvery = TimeSpan.FromSeconds(30);

    private readonly ILogger _logger = loggers.CreateLogger("StreamSpace.Database");
    private readonly Lock _lock = new();
    private long? _lastWarning;
    private int _quiet;

    public void Failed(PathString path, Exception ex)
    {
        int quiet;
        lock (_lock)
        {
            if (_lastWarning is { } last && time.GetElapsedTime(last) < WarnEvery)
            {
                quiet = ++_quiet;
                _logger.LogDebug(DatabaseUnavailable, "Database unavailable while serving {Path}: {Error} ({Failures} failed requests since the last warning)",
                    path, DatabaseOutageLog.OneLine(ex), quiet);
                return;
            }
            _lastWarning = time.GetTimestamp();
            quiet = _quiet;
            _quiet = 0;
        }
        _logger.LogWarning(DatabaseUnavailable, "Database unavailable while serving {Path}: {Error} ({Failures} more failed requests since the last warning, logged at Debug; at most one warning every {Interval})",
            path, DatabaseOutageLog.OneLine(ex), quiet, WarnEvery);
    }
}
