// Stream relay benchmark (design §10): echo throughput through StreamSpace's relay
// (viewer WebSocket → control plane → agent data WebSocket → StreamBridge → TCP) against websockify
// (WebSocket → TCP, one hop) measured in the same run on the same echo server. Not a test: it prints
// figures and the ratio. Run:  dotnet run -c Release --project bench/StreamSpace.StreamBench -- [--mib 256] [--streams 4]
using StreamSpace.StreamBench;

return await StreamBench.MainAsync(args);
