using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using StreamSpace.Agent.Runtimes;
using StreamSpace.Agent.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Streaming;

public sealed class StreamBridgeTests
{
    private static StreamOpenArgs Args(int port) => new()
    {
        StreamId = "s1",
        DataPath = "/api/v1/agents/streams/s1",
        DataUrl = $"http://127.0.0.1:{port}/",
        Token = "t",
    };

    [Fact]
    public async Task A_data_socket_that_accepts_and_never_answers_fails_the_stream_within_the_connect_timeout()
    {
        // A replica that is going away, or a proxy in front of it, accepts the connection and never answers the upgrade.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var vncDialled = false;

        var watch = Stopwatch.StartNew();
        var failure = await Should.ThrowAsync<SessionRuntimeException>(() => StreamBridge.ConnectAsync(
            new Uri("http://127.0.0.1:1/"), Args(port), _ => { vncDialled = true; return Task.FromResult<Stream>(new MemoryStream()); },
            NullLogger.Instance, TestContext.Current.CancellationToken, connectTimeout: TimeSpan.FromMilliseconds(500)));

        watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));
        failure.Message.ShouldBe($"the stream's data socket at 127.0.0.1:{port} did not answer within 0.5 s");
        vncDialled.ShouldBeFalse();
    }

    [Fact]
    public async Task A_data_socket_nobody_listens_on_fails_the_stream_saying_so()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop(); // nobody listens there now: the connection is refused

        var failure = await Should.ThrowAsync<SessionRuntimeException>(() => StreamBridge.ConnectAsync(
            new Uri("http://127.0.0.1:1/"), Args(port), _ => Task.FromResult<Stream>(new MemoryStream()),
            NullLogger.Instance, TestContext.Current.CancellationToken));

        failure.Message.ShouldStartWith($"the stream's data socket at 127.0.0.1:{port} could not be opened: ");
    }

    [Fact]
    public async Task The_VNC_connection_and_what_follows_run_on_the_thread_pool_not_on_the_socket_event_thread_the_upgrade_completed_on()
    {
        await using var endpoint = await TestStreamEndpoint.StartAsync();
        (string? Name, bool Pool)? vncDialledOn = null;

        await using var bridge = await StreamBridge.ConnectAsync(
            new Uri(endpoint.Url), TestStreamEndpoint.Args("s1"),
            _ =>
            {
                vncDialledOn = (Thread.CurrentThread.Name, Thread.CurrentThread.IsThreadPoolThread);
                return Task.FromResult<Stream>(new MemoryStream());
            },
            NullLogger.Instance, TestContext.Current.CancellationToken);

        // The data socket's completions are inline from before the upgrade was sent, so its answer completed on the event
        // thread; the VNC connection (a lock, a connect) and the command's bookkeeping after it (fsyncs) must not run there.
        vncDialledOn.ShouldBe((".NET TP Worker", true));
        await endpoint.NextAsync(TimeSpan.FromSeconds(10));
    }
}
