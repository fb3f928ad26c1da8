using StreamSpace.ControlPlane.Hosting;

var app = StreamSpaceApp.Build(args);
await app.RunAsync();
