using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;

namespace StreamSpace.Protocol.Tests;

/// <summary>
/// The shared relay copier over real loopback TCP connections (WebSockets created on them): what each direction
/// forwards, where message boundaries survive, and how each ending is reported.
/// </summary>
public sealed class RelayCopierTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task WebSocket_to_WebSocket_keeps_message_types_fragments_and_empty_messages_and_reports_input()
    {
        await using var a = await WebSocketPair.OpenAsync();
        await using var b = await WebSocketPair.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        // Each chunk as the observer saw it: whether it starts a message, and its length.
        var inputs = new List<(bool Start, int Length)>();
        var copy = RelayCopier.CopyAsync(a.Server, b.Server, (data, start) => inputs.Add((start, data.Length)), cts.Token);

        var big = RandomNumberGenerator.GetBytes(3 * RelayCopier.BufferSize + 17);
        await a.Client.SendAsync("hi"u8.ToArray(), WebSocketMessageType.Text, endOfMessage: true, cts.Token);
        await a.Client.SendAsync(Array.Empty<byte>(), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        await a.Client.SendAsync(big, WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        await a.Client.SendAsync("frag-"u8.ToArray(), WebSocketMessageType.Binary, endOfMessage: false, cts.Token);
        await a.Client.SendAsync("ment"u8.ToArray(), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);

        (await ReadMessageAsync(b.Client, cts.Token)).ShouldBe((WebSocketMessageType.Text, "hi"));
        (await ReadMessageAsync(b.Client, cts.Token)).ShouldBe((WebSocketMessageType.Binary, ""));
        (await ReadMessageAsync(b.Client, cts.Token)).ShouldBe((WebSocketMessageType.Binary, Convert.ToHexString(big)));
        (await ReadMessageAsync(b.Client, cts.Token)).ShouldBe((WebSocketMessageType.Binary, "frag-ment"));

        await a.Client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
        (await copy).Result.ShouldBe(RelayCopyResult.Success);
        inputs.Count(i => i.Start).ShouldBe(4, "one start per message, also for the empty one and the fragmented one");
        inputs[^1].ShouldBe((false, 4), "the last fragment continues its message");
        inputs.Sum(i => i.Length).ShouldBe(2 + big.Length + 9);
        inputs[0].ShouldBe((true, 2));
        inputs[1].ShouldBe((true, 0));
    }

    [Fact]
    public async Task WebSocket_to_stream_writes_the_payloads_in_order_and_ends_on_close()
    {
        await using var ws = await WebSocketPair.OpenAsync();
        await using var tcp = await TcpPair.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        var copy = RelayCopier.CopyAsync(ws.Server, tcp.Left, cts.Token);

        var data = RandomNumberGenerator.GetBytes(5 * RelayCopier.BufferSize + 3);
        await ws.Client.SendAsync(data.AsMemory(0, 100), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        await ws.Client.SendAsync(Array.Empty<byte>(), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        await ws.Client.SendAsync(data.AsMemory(100), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        var received = new byte[data.Length];
        await tcp.Right.ReadExactlyAsync(received, cts.Token);
        Convert.ToHexString(received).ShouldBe(Convert.ToHexString(data));

        await ws.Client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
        (await copy).Result.ShouldBe(RelayCopyResult.Success);
    }

    [Fact]
    public async Task Stream_to_WebSocket_sends_binary_messages_and_ends_when_the_stream_ends()
    {
        await using var ws = await WebSocketPair.OpenAsync();
        await using var tcp = await TcpPair.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        var copy = RelayCopier.CopyAsync(tcp.Left, ws.Server, cts.Token);

        var data = RandomNumberGenerator.GetBytes(4 * RelayCopier.BufferSize + 999);
        await tcp.Right.WriteAsync(data, cts.Token);
        tcp.RightSocket.Shutdown(SocketShutdown.Send);

        using var received = new MemoryStream();
        var buffer = new byte[RelayCopier.BufferSize * 2];
        while (received.Length < data.Length)
        {
            var r = await ws.Client.ReceiveAsync(buffer.AsMemory(), cts.Token);
            r.MessageType.ShouldBe(WebSocketMessageType.Binary);
            r.EndOfMessage.ShouldBeTrue();
            r.Count.ShouldBeLessThanOrEqualTo(RelayCopier.BufferSize);
            received.Write(buffer, 0, r.Count);
        }
        Convert.ToHexString(received.ToArray()).ShouldBe(Convert.ToHexString(data));
        (await copy).Result.ShouldBe(RelayCopyResult.Success);
    }

    [Fact]
    public async Task A_broken_output_is_an_output_error_not_an_exception()
    {
        await using var a = await WebSocketPair.OpenAsync();
        await using var b = await WebSocketPair.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        var copy = RelayCopier.CopyAsync(a.Server, b.Server, null, cts.Token);
        b.Server.Abort();

        await a.Client.SendAsync("x"u8.ToArray(), WebSocketMessageType.Binary, endOfMessage: true, cts.Token);
        var (result, error) = await copy;
        result.ShouldBe(RelayCopyResult.OutputError);
        error.ShouldNotBeNull();
    }

    [Fact]
    public async Task A_broken_input_is_an_input_error_and_cancelling_is_canceled()
    {
        await using var tcp = await TcpPair.OpenAsync();
        await using var ws = await WebSocketPair.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        var broken = RelayCopier.CopyAsync(ws.Server, tcp.Left, cts.Token);
        ws.ClientSocket.LingerState = new LingerOption(true, 0);
        ws.ClientSocket.Close(); // RST: the peer vanished mid-stream, without a close frame
        (await broken.WaitAsync(cts.Token)).Result.ShouldBe(RelayCopyResult.InputError);

        using var cancel = new CancellationTokenSource();
        var idle = RelayCopier.CopyAsync(tcp.Left, ws.Server, cancel.Token);
        await Task.Delay(50, cts.Token);
        idle.IsCompleted.ShouldBeFalse();
        await cancel.CancelAsync();
        (await idle.WaitAsync(cts.Token)).Result.ShouldBe(RelayCopyResult.Canceled);
    }

    /// <summary>One whole message: its type and its payload (as text when it is short ASCII, else as hex).</summary>
    private static async Task<(WebSocketMessageType Type, string Payload)> ReadMessageAsync(WebSocket socket, CancellationToken ct)
    {
        using var message = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer.AsMemory(), ct);
            message.Write(buffer, 0, r.Count);
            if (!r.EndOfMessage) continue;
            var bytes = message.ToArray();
            return (r.MessageType, bytes.Length < 64 ? System.Text.Encoding.ASCII.GetString(bytes) : Convert.ToHexString(bytes));
        }
    }

    /// <summary>Two ends of one loopback TCP connection.</summary>
    private sealed class TcpPair : IAsyncDisposable
    {
        private TcpPair(Socket left, Socket right)
        {
            LeftSocket = left;
            RightSocket = right;
            Left = new NetworkStream(left, ownsSocket: true);
            Right = new NetworkStream(right, ownsSocket: true);
        }

        public Socket LeftSocket { get; }
        public Socket RightSocket { get; }
        public NetworkStream Left { get; }
        public NetworkStream Right { get; }

        public static async Task<TcpPair> OpenAsync()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var right = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var accept = listener.AcceptAsync();
            await right.ConnectAsync(listener.LocalEndPoint!);
            var left = await accept;
            left.NoDelay = true;
            return new TcpPair(left, right);
        }

        public async ValueTask DisposeAsync()
        {
            await Left.DisposeAsync();
            await Right.DisposeAsync();
        }
    }

    /// <summary>A server and a client WebSocket on one loopback TCP connection.</summary>
    private sealed class WebSocketPair : IAsyncDisposable
    {
        private readonly TcpPair _tcp;

        private WebSocketPair(TcpPair tcp)
        {
            _tcp = tcp;
            Server = WebSocket.CreateFromStream(tcp.Left, new WebSocketCreationOptions { IsServer = true });
            Client = WebSocket.CreateFromStream(tcp.Right, new WebSocketCreationOptions { IsServer = false });
        }

        public WebSocket Server { get; }
        public WebSocket Client { get; }
        public Socket ClientSocket => _tcp.RightSocket;

        public static async Task<WebSocketPair> OpenAsync() => new(await TcpPair.OpenAsync());

        public async ValueTask DisposeAsync()
        {
            Server.Dispose();
            Client.Dispose();
            await _tcp.DisposeAsync();
        }
    }
}
