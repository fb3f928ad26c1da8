using System.Net;
using System.Net.Sockets;

namespace StreamSpace.Protocol.Tests;

/// <summary>
/// The per-socket switch the relay uses, on real loopback sockets: a socket it is set on continues on the runtime's
/// socket event thread, any other socket on a thread-pool thread. Also the guard for a runtime update that drops the
/// runtime's internal switch: this test fails then, instead of the relay silently losing its speed.
/// </summary>
public sealed class InlineSocketCompletionsTests
{
    [Fact]
    public async Task A_socket_it_is_enabled_on_completes_on_the_socket_event_thread_and_other_sockets_on_the_thread_pool()
    {
        InlineSocketCompletions.Enabled.ShouldBeTrue("this runtime on Linux has Socket.PreferInlineCompletions");
        var (inlineSide, inlinePeer) = await ConnectedPairAsync();
        var (pooledSide, pooledPeer) = await ConnectedPairAsync();
        using (inlineSide) using (inlinePeer) using (pooledSide) using (pooledPeer)
        {
            InlineSocketCompletions.TryEnable(inlineSide).ShouldBeTrue();
            InlineSocketCompletions.IsEnabledOn(inlineSide).ShouldBeTrue();
            InlineSocketCompletions.IsEnabledOn(pooledSide).ShouldBeFalse();

            (await ReceiveOnAsync(inlineSide, inlinePeer)).ShouldBe((".NET Sockets", false));
            var (_, pooled) = await ReceiveOnAsync(pooledSide, pooledPeer);
            pooled.ShouldBeTrue("a socket left alone completes on the thread pool");
        }
    }

    /// <summary>Where the code after a receive that had to wait for data runs: the thread's name and whether it is a pool thread.</summary>
    private static async Task<(string? Thread, bool Pool)> ReceiveOnAsync(Socket side, Socket peer)
    {
        var buffer = new byte[16];
        var receive = side.ReceiveAsync(buffer, SocketFlags.None, TestContext.Current.CancellationToken).AsTask();
        // Registered before the data is sent, and run synchronously: it runs on the thread that completes the receive.
        var where = receive.ContinueWith(
            r => (r.Result, Thread.CurrentThread.Name, Thread.CurrentThread.IsThreadPoolThread),
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        await Task.Delay(50, TestContext.Current.CancellationToken);
        receive.IsCompleted.ShouldBeFalse("the receive waits for data, so epoll reports its completion");
        await peer.SendAsync("ping"u8.ToArray(), SocketFlags.None, TestContext.Current.CancellationToken);
        var (received, thread, pool) = await where;
        received.ShouldBe(4);
        return (thread, pool);
    }

    private static async Task<(Socket Side, Socket Peer)> ConnectedPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await peer.ConnectAsync(listener.LocalEndPoint!, TestContext.Current.CancellationToken);
        return (await listener.AcceptAsync(TestContext.Current.CancellationToken), peer);
    }
}
