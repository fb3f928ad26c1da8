using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace StreamSpace.Agent.Tests;

/// <summary>Captures every log line so tests can assert on what an operator would read.</summary>
internal sealed class TestLog : ILoggerProvider, ILoggerFactory
{
    public ConcurrentQueue<(LogLevel Level, string Category, string Message)> Entries { get; } = new();

    public bool Contains(string text, LogLevel atLeast = LogLevel.Trace) =>
        Entries.Any(e => e.Level >= atLeast && e.Message.Contains(text, StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(TestLog log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            log.Entries.Enqueue((logLevel, category, formatter(state, exception) + (exception is null ? "" : " " + exception)));
    }
}
