// Stream relay benchmark (design §10, issue 4): echo traffic through StreamSpace's relay
// (viewer WebSocket → control plane → agent data WebSocket → StreamBridge → Unix socket, as the process runtime
// reaches Xvnc) against websockify (WebSocket → the same Unix socket, one hop; --websockify-target tcp for TCP) and
// direct TCP, measured in the same run on the same echo server, at 1, 10 and 100 concurrent streams. A fourth path,
// "3-hop floor", puts bare socket forwarders where the control plane and the agent are (TCP → TCP → Unix socket,
// no WebSocket, no HTTP): the least any relay with the architecture's hops costs on the machine at hand. A fifth,
// "native floor", does the same with two native single-threaded epoll forwarders in processes of their own
// (bench/native-forwarder/forwarder.c, built by bench/stream.sh with cc): no managed runtime in the relay at all.
// Not a test: it prints figures and ratios against the targets.
//
// Method:
// - Throughput: 128 MiB echoed per measurement in 64 KiB messages, split over the streams, all streams at once.
//   CPU ms/MiB is this process (clients, echo server, and for ours the control plane and the agent bridge) plus
//   websockify's processes: efficiency, which is steadier than MiB/s on a machine shared with other work.
// - Added round-trip latency (the target): every stream open, each sending a 64-byte ping every 16 ms (the pace of
//   the busiest interactive input: browsers fire mousemove at most once per 60 Hz frame and noVNC sends each as a
//   pointer event) at a random phase, for 2 s; the p50 of those round trips minus
//   direct TCP's p50 under the same streams and pacing. Issue 4 asks what the path adds, so the load is what a
//   viewer's input produces, not a flood. "CPU µs/rt" is the CPU time per paced round trip (as for CPU ms/MiB).
// - Saturated latency (printed too, labelled): every stream pinging back-to-back, 2000 round trips split over the
//   streams. At 100 streams on 2 cores that measures how long a ping queues behind 99 others for the CPU (direct
//   TCP alone is ~3 ms p50 there), i.e. CPU cost, not the path's latency. It was the only latency figure before.
// - JIT: the bench runs with tiered compilation off (see the csproj): the product runs for days on fully optimized
//   code, while a measurement here lasts about a second, so tier-0 code and background JIT would be billed to
//   whichever path runs first. Same setting for every path (the clients and echo server share the process).
// Run: bench/stream.sh, or dotnet run -c Release --project bench/StreamSpace.StreamBench --
//   [--mib 128] [--pings 2000] [--pace-ms 16] [--paced-seconds 2] [--streams 1,10,100] [--only ours|floor|native]
//   [--websockify-target unix|tcp]
// - Our relay's sockets run their completions on the socket event threads, as in the product (StreamSpace.Protocol's
//   InlineSocketCompletions, set up the same way before the first socket); STREAMSPACE_RELAY_INLINE_COMPLETIONS=0
//   measures it with thread-pool hand-overs instead.
using StreamSpace.Protocol;
using StreamSpace.StreamBench;

InlineSocketCompletions.ConfigureEventThreads();
return await StreamBench.MainAsync(args);
