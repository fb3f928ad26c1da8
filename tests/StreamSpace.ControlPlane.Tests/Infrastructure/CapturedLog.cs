using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>A logger provider that keeps every entry (with its exception), so tests can assert on what an operator would read.</summary>
public sealed class CapturedLog : ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, string Category, string Message, Exception? Exception)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(CapturedLog log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            log.Entries.Enqueue((logLevel, category, formatter(state, exception), exception));
    }
}
