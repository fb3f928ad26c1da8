using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;
using StreamSpace.Agent.Hosting;
using StreamSpace.ControlPlane.Hosting;

// The start-up failures an operator meets most end in one plain line and an exit code, not an unhandled-exception dump
// (which also aborts the process): a setting it cannot start with (2), an address already taken (1), a database it cannot
// use (3). SIGTERM or Ctrl-C while it starts (waiting for its database, say) is a stop like any other: exit code 0.
// Before the first socket: the stream relay's sockets complete on the socket event threads, one per core.
StreamSpace.Protocol.InlineSocketCompletions.ConfigureEventThreads();
IHostApplicationLifetime? lifetime = null;
try
{
    var app = StreamSpaceApp.Build(args);
    lifetime = app.Lifetime;
    await app.RunAsync();
    return 0;
}
catch (OperationCanceledException) when (lifetime?.ApplicationStopping.IsCancellationRequested == true)
{
    Console.Error.WriteLine("streamspace: stopped before start-up finished, as asked");
    return 0;
}
catch (Exception ex) when (ex is StreamSpaceConfigurationException or AgentOptionsException)
{
    Console.Error.WriteLine($"streamspace: {ex.Message}");
    return 2;
}
catch (Exception ex) when (ex is OptionsValidationException || ex is AggregateException { InnerExceptions: var inner } && inner.All(e => e is OptionsValidationException))
{
    // A section validated when the host starts (ValidateOnStart): its validator's own words, not a stack trace.
    var failures = ex is AggregateException all ? all.InnerExceptions.Cast<OptionsValidationException>() : [(OptionsValidationException)ex];
    Console.Error.WriteLine($"streamspace: {string.Join("; ", failures.SelectMany(f => f.Failures))}");
    return 2;
}
catch (DatabaseUnavailableException ex)
{
    Console.Error.WriteLine($"streamspace: {ex.Message}");
    return 3;
}
catch (Exception ex) when (ex is ListenAddressInUseException || ex is IOException { InnerException: AddressInUseException })
{
    // Kestrel's own bind error (an address given by host name) says which address; ours says what to do too.
    Console.Error.WriteLine($"streamspace: {(ex is ListenAddressInUseException ? ex.Message : ex.Message + " Stop what listens there, or choose another address with STREAMSPACE_URLS.")}");
    return 1;
}
