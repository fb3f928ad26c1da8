using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StreamSpace.Agent.Hosting;
using StreamSpace.Agent.Runtimes;

// The standalone agent: generic host, JSON console logs, SIGTERM/Ctrl-C = graceful drain (sessions keep running).
// Before the first socket: the stream relay's sockets complete on the socket event threads, one per core.
StreamSpace.Protocol.InlineSocketCompletions.ConfigureEventThreads();
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.ClearProviders();
builder.Logging.AddJsonConsole(o =>
{
    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
    o.UseUtcTimestamp = true;
});

AgentOptions options;
string? stateMoved = null;
try
{
    options = AgentOptions.FromConfiguration(builder.Configuration);
    options.Validate();
    // The default ./data/agent-<id> moves out of a folder the session accounts cannot pass through (a checkout in /root).
    if (AgentOptions.ConfiguredStateFolder(builder.Configuration) is null)
        (options.StateFolder, stateMoved) = StateFolderChoice.Choose(options.StateFolder, null, Environment.IsPrivilegedProcess, options.SharedStateRoot);
    options.EnsureStateFolder();
}
catch (AgentOptionsException ex)
{
    await Console.Error.WriteLineAsync(ex.Message);
    return 2;
}

builder.Services.AddSingleton(options);
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<ISessionRuntime>(sp => RuntimeFactory.Create(options, sp.GetRequiredService<ILoggerFactory>(), sp.GetRequiredService<TimeProvider>()));
builder.Services.AddHostedService<AgentWorker>();
// Long enough for the drain heartbeat and a clean close; sessions are never waited for.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));

using var host = builder.Build();
if (stateMoved is not null)
    host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("StreamSpace.Agent").LogWarning(
        "The agent keeps its state (sessions, homes) in {State}, not in ./data: {Why}", options.StateFolder, stateMoved);
try
{
    await host.RunAsync();
}
catch (AgentOptionsException ex)
{
    // Found only as the worker starts: its state folder in use by another agent process.
    await Console.Error.WriteLineAsync(ex.Message);
    return 2;
}
return 0;
