using Microsoft.AspNetCore.Connections;
using StreamSpace.ControlPlane.Hosting;

try
{
    var app = StreamSpaceApp.Build(args);
    await app.RunAsync();
    return 0;
}
catch (Exception ex) when (ex is ListenAddressInUseException || ex is IOException { InnerException: AddressInUseException })
{
    // A plain line, not an unhandled-exception dump: the one start-up failure an operator meets most (a second ./run.sh,
    // or another service on port 8000). Kestrel's own bind error (an address given by host name) says which address.
    Console.Error.WriteLine($"streamspace: {(ex is ListenAddressInUseException ? ex.Message : ex.Message + " Stop what listens there, or choose another address with STREAMSPACE_URLS.")}");
    return 1;
}
