using StreamSpace.ControlPlane.Streaming;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// Which viewer → session bytes count as a person's input (session activity): the client messages a viewer sends by
/// itself do not, nor does the handshake, however its bytes fall into WebSocket messages and chunks.
/// </summary>
public sealed class StreamingRfbInputDetectorTests
{
    private static readonly byte[] Version38 = "RFB 003.008\n"u8.ToArray();
    private static readonly byte[] KeyEvent = [4, 1, 0, 0, 0, 0, 0, 0x41];
    private static readonly byte[] PointerEvent = [5, 0, 0, 10, 0, 20];
    private static readonly byte[] CutText = [6, 0, 0, 0, 0, 0, 0, 2, (byte)'h', (byte)'i'];
    private static readonly byte[] QemuKeyEvent = [255, 0, 0, 1, 0, 0, 0, 0x41, 0, 0, 0, 0x1e];

    /// <summary>What noVNC sends by itself: pixel format, encodings, update request, fence, continuous updates, desktop size, clipboard caps.</summary>
    private static readonly byte[][] ViewerOwnMessages =
    [
        [0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0],
        [2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xfc],
        [3, 1, 0, 0, 0, 0, 4, 0, 3, 0],
        [248, 0, 0, 0, 0x80, 0, 0, 0x03, 0],
        [150, 1, 0, 0, 0, 0, 4, 0, 3, 0],
        [251, 0, 4, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0],
        [6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0, 0x10, 0],
        [255, 1, 0, 0], // QEMU audio, not a key
    ];

    private sealed class Counter
    {
        public int Inputs;
        public RfbInputDetector Detector { get; }
        public Counter() => Detector = new RfbInputDetector(() => Inputs++);
        public void Message(byte[] message) => Detector.Observe(message, startOfMessage: true);
    }

    [Fact]
    public void After_a_None_handshake_only_keys_pointer_cut_text_and_QEMU_keys_count()
    {
        var c = new Counter();
        c.Message(Version38);
        c.Message([1]); // security type None
        c.Message([1]); // ClientInit: shared
        c.Detector.PastHandshake.ShouldBeTrue();
        foreach (var message in ViewerOwnMessages) c.Message(message);
        c.Inputs.ShouldBe(0);

        c.Message(KeyEvent);
        c.Message(PointerEvent);
        c.Message(CutText);
        c.Message(QemuKeyEvent);
        c.Inputs.ShouldBe(4);
    }

    [Fact]
    public void Handshake_bytes_that_look_like_input_do_not_count_however_they_are_chunked()
    {
        // VNC authentication: a 16-byte response starting with 4 (a KeyEvent's type), sent in pieces.
        var c = new Counter();
        c.Message(Version38[..5]);
        c.Detector.Observe(Version38.AsSpan(5), startOfMessage: false);
        c.Message([2]);
        c.Message([4, 5, 6, 255, 0, 1, 2, 3]);
        c.Detector.Observe([4, 5, 6, 255, 0, 1, 2, 3], startOfMessage: false);
        c.Inputs.ShouldBe(0);
        c.Detector.PastHandshake.ShouldBeFalse();
        // The ClientInit and a KeyEvent in one chunk: the byte after the handshake starts a message.
        c.Message([1, .. KeyEvent]);
        c.Detector.PastHandshake.ShouldBeTrue();
        c.Inputs.ShouldBe(1);
    }

    [Fact]
    public void Only_the_start_of_a_WebSocket_message_is_read()
    {
        var c = new Counter();
        c.Message([.. Version38, 1, 1]);
        // An update request whose message continues with bytes that look like a KeyEvent.
        c.Message([3, 1, 0, 0]);
        c.Detector.Observe(KeyEvent, startOfMessage: false);
        c.Inputs.ShouldBe(0);
        // The handshake ending inside a WebSocket message: its next chunk starts the first client message.
        var d = new Counter();
        d.Message(Version38);
        d.Message([1, 1]);
        d.Detector.Observe(KeyEvent, startOfMessage: false);
        d.Inputs.ShouldBe(1);
    }

    [Fact]
    public void Other_security_types_and_RFB_3_3_count_nothing_until_SetEncodings()
    {
        // VeNCrypt (19): its version and subtype bytes are not followed; SetEncodings ends the handshake.
        var c = new Counter();
        c.Message(Version38);
        c.Message([19]);
        c.Message([0, 2]);
        c.Message([0, 0, 1, 0]);
        c.Message([1]);
        c.Message(ViewerOwnMessages[0]); // SetPixelFormat
        c.Inputs.ShouldBe(0);
        c.Message(ViewerOwnMessages[1]); // SetEncodings
        c.Detector.PastHandshake.ShouldBeTrue();
        c.Message(KeyEvent);
        c.Inputs.ShouldBe(1);

        // RFB 3.3: the server chooses the security type; the client sends ClientInit next.
        var d = new Counter();
        d.Message("RFB 003.003\n"u8.ToArray());
        d.Message([1]);
        d.Message(ViewerOwnMessages[1]);
        d.Message(PointerEvent);
        d.Inputs.ShouldBe(1);
    }
}
