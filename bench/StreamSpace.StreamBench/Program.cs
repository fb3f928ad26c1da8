// Stream relay benchmark (design §10): echo throughput through StreamSpace's relay
// (viewer WebSocket → control plane → agent data WebSocket → StreamBridge → TCP) against websockify
// (WebSocket → TCP, one hop) and direct TCP, measured in the same run on the same echo server: throughput and
// 64-byte round-trip latency (p50/p99) at 1, 10 and 100 concurrent streams. Not a test: it prints figures and ratios.
// Run: bench/stream.sh, or dotnet run -c Release --project bench/StreamSpace.StreamBench -- [--mib 128] [--pings 2000] [--streams 1,10,100]
using StreamSpace.StreamBench;

return await StreamBench.MainAsync(args);
