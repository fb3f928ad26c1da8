using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>An RFB session through the whole relay (viewer ⇄ control plane ⇄ StreamBridge) to a real Xvnc.</summary>
public sealed class RelayXvncTests(StreamingSqliteControlPlane cp) : IClassFixture<StreamingSqliteControlPlane>
{
    [Fact]
    public async Task Relay_with_in_process_agent_side_carries_an_RFB_handshake_and_a_framebuffer_update_from_real_Xvnc()
    {
        await using var xvnc = await StreamingXvnc.StartAsync(1024, 768);
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        cp.AgentSide.Serve(session, xvnc.ConnectAsync);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var viewer = await cp.ConnectViewerAsync(alice, session);
        var rfb = new StreamingWebSocketReader(viewer);
        Task SendAsync(byte[] bytes) => viewer.SendAsync(bytes, WebSocketMessageType.Binary, true, cts.Token);

        // ProtocolVersion (RFC 6143 §7.1.1)
        Encoding.ASCII.GetString(await rfb.ReadExactAsync(12, cts.Token)).ShouldBe("RFB 003.008\n");
        await SendAsync("RFB 003.008\n"u8.ToArray());
        // Security: the list must offer None (1); choose it; SecurityResult OK.
        var count = (await rfb.ReadExactAsync(1, cts.Token))[0];
        count.ShouldBeGreaterThan((byte)0);
        (await rfb.ReadExactAsync(count, cts.Token)).ShouldContain((byte)1);
        await SendAsync([1]);
        BinaryPrimitives.ReadUInt32BigEndian(await rfb.ReadExactAsync(4, cts.Token)).ShouldBe(0u);
        // ClientInit (shared) → ServerInit: width, height, pixel format, name.
        await SendAsync([1]);
        var init = await rfb.ReadExactAsync(24, cts.Token);
        BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(0)).ShouldBe((ushort)1024);
        BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(2)).ShouldBe((ushort)768);
        var bitsPerPixel = init[4];
        var nameLength = (int)BinaryPrimitives.ReadUInt32BigEndian(init.AsSpan(20));
        await rfb.ReadExactAsync(nameLength, cts.Token);

        // FramebufferUpdateRequest for the whole screen, non-incremental; no SetEncodings → Raw only.
        var request = new byte[10];
        request[0] = 3;
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), 1024);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8), 768);
        await SendAsync(request);
        var header = await rfb.ReadExactAsync(4, cts.Token);
        header[0].ShouldBe((byte)0, "FramebufferUpdate message type");
        var rects = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
        rects.ShouldBeGreaterThan((ushort)0);
        long pixels = 0;
        for (var i = 0; i < rects; i++)
        {
            var rect = await rfb.ReadExactAsync(12, cts.Token);
            var w = BinaryPrimitives.ReadUInt16BigEndian(rect.AsSpan(4));
            var h = BinaryPrimitives.ReadUInt16BigEndian(rect.AsSpan(6));
            BinaryPrimitives.ReadInt32BigEndian(rect.AsSpan(8)).ShouldBe(0, "Raw encoding");
            await rfb.SkipAsync((long)w * h * (bitsPerPixel / 8), cts.Token);
            pixels += (long)w * h;
        }
        pixels.ShouldBe(1024L * 768, "the whole screen arrived");
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
    }
}
