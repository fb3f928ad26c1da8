using StreamSpace.Bench;

return await Bench.MainAsync(args);
