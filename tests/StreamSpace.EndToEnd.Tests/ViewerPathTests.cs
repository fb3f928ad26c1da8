using System.Buffers.Binary;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// The whole viewer path with real processes: viewer ticket → WebSocket to the control plane → stream.open
/// to the agent process → data socket back → the session's Xvnc. A small RFB client checks the protocol.
/// </summary>
public sealed class ViewerPathTests
{
    [Fact]
    public async Task Rfb_handshake_and_a_framebuffer_update_through_control_plane_and_agent_to_xvnc()
    {
        await using var platform = await Platform.StartAsync(DatabaseKind.Sqlite, heartbeatSeconds: 2);
        var admin = await platform.AdminAsync();
        await platform.AddAgentAsync("agent-viewer", "process");
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-viewer") == "online", TimeSpan.FromSeconds(10), "agent online");
        var id = (await admin.CreateSessionAsync("xterm")).GetProperty("id").GetString()!;
        await admin.WaitForSessionStateAsync(id, "running", TimeSpan.FromSeconds(60));

        using var ticketResponse = await admin.PostAsync($"/api/v1/sessions/{id}/viewer-ticket", null);
        var ticketJson = JsonDocument.Parse(await ticketResponse.Content.ReadAsStringAsync()).RootElement;
        ticketResponse.IsSuccessStatusCode.ShouldBeTrue(ticketJson.ToString());
        var url = ticketJson.GetProperty("url").GetString()!;
        url.ShouldNotContain("token=", Case.Insensitive);

        using var ws = new ClientWebSocket();
        ws.Options.AddSubProtocol("binary");
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{platform.Port}{url}"), TestContext.Current.CancellationToken);
        var rfb = new RfbReader(ws);

        // ProtocolVersion
        var version = Encoding.ASCII.GetString(await rfb.ReadAsync(12));
        version.ShouldStartWith("RFB 003.00");
        await rfb.SendAsync(Encoding.ASCII.GetBytes("RFB 003.008\n"));
        // Security: a list of types; the relay must carry None (1).
        var count = (await rfb.ReadAsync(1))[0];
        count.ShouldBeGreaterThan((byte)0);
        var types = await rfb.ReadAsync(count);
        types.ShouldContain((byte)1);
        await rfb.SendAsync([1]);
        BinaryPrimitives.ReadUInt32BigEndian(await rfb.ReadAsync(4)).ShouldBe(0u, "SecurityResult OK");
        // ClientInit (shared) → ServerInit with the desktop size.
        await rfb.SendAsync([1]);
        var init = await rfb.ReadAsync(24);
        var width = BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(0, 2));
        var height = BinaryPrimitives.ReadUInt16BigEndian(init.AsSpan(2, 2));
        (width, height).ShouldBe(((ushort)1280, (ushort)800));
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(init.AsSpan(20, 4));
        await rfb.ReadAsync((int)nameLength);
        // FramebufferUpdateRequest (full) → FramebufferUpdate (message type 0).
        var request = new byte[10];
        request[0] = 3;
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), width);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8), height);
        await rfb.SendAsync(request);
        (await rfb.ReadAsync(1))[0].ShouldBe((byte)0, "FramebufferUpdate");
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", TestContext.Current.CancellationToken);

        // The ticket was single use.
        using var again = new ClientWebSocket();
        await Should.ThrowAsync<WebSocketException>(() => again.ConnectAsync(new Uri($"ws://127.0.0.1:{platform.Port}{url}"), TestContext.Current.CancellationToken));
    }

    /// <summary>Reads exact byte counts from a stream of binary WebSocket frames (frame boundaries mean nothing in RFB).</summary>
    private sealed class RfbReader(WebSocket ws)
    {
        private readonly byte[] _frame = new byte[1 << 20];
        private int _start, _end;

        public async Task<byte[]> ReadAsync(int count)
        {
            var result = new byte[count];
            var filled = 0;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            while (filled < count)
            {
                if (_start == _end)
                {
                    var r = await ws.ReceiveAsync(_frame, timeout.Token);
                    if (r.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException($"stream closed: {ws.CloseStatusDescription}");
                    _start = 0;
                    _end = r.Count;
                    continue;
                }
                var n = Math.Min(count - filled, _end - _start);
                Array.Copy(_frame, _start, result, filled, n);
                _start += n;
                filled += n;
            }
            return result;
        }

        public Task SendAsync(byte[] data) => ws.SendAsync(data, WebSocketMessageType.Binary, true, CancellationToken.None);
    }
}
