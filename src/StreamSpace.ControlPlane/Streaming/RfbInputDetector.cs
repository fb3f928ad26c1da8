namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Finds a person's input in one stream's viewer → session bytes (RFC 6143 client messages), so that only input counts
/// as session activity. A viewer sends a lot on its own: noVNC answers TigerVNC's fences, keeps asking for framebuffer
/// updates, turns continuous updates on, sets the desktop size to its window, and every (re)connect starts with the RFB
/// handshake; counting those kept every session with a changing screen "active" forever, so idle handling never ran.
/// Input is a KeyEvent (4), a PointerEvent (5), a plain ClientCutText (6) and QEMU's extended KeyEvent (255, 0).
/// </summary>
/// <remarks>
/// <para>
/// What it reads, and what is approximated: the handshake is followed byte by byte (12 bytes of ProtocolVersion, the
/// security type, the 16-byte VNC-authentication response if that type was chosen, the 1-byte ClientInit). After it,
/// only the first byte of each WebSocket message is looked at (and the byte right after the handshake). noVNC sends
/// every client message as a WebSocket message of its own (its <c>RFB.messages.*</c> each end with a flush), so for it
/// this is exact, except that a message longer than noVNC's 10 KiB send buffer (a long pasted text) goes out as
/// several WebSocket messages, whose later ones are then read as message starts too. A client that packs several RFB
/// messages into one WebSocket message is judged by the first. Security types other than None and VNC authentication
/// (VeNCrypt, TLS, …) exchange client bytes this does not follow, and RFB 3.3 lets the server choose the type: then
/// the handshake is taken to end at the first message that starts with SetEncodings (2), which every viewer sends right
/// after it (and which is not input). Extended-clipboard messages (a ClientCutText with a negative length) are the
/// viewer's own capability, peek and request replies, so they do not count; pasting in the session is a key or pointer
/// event anyway.
/// </para>
/// <para>Called by one copy loop at a time; no allocation per message: a few fields and a switch.</para>
/// </remarks>
internal sealed class RfbInputDetector(Action onInput)
{
    private const int VersionLength = 12;
    private const int VncAuthResponseLength = 16;
    private const byte SecurityNone = 1;
    private const byte SecurityVncAuth = 2;

    private const byte SetEncodings = 2;
    private const byte KeyEvent = 4;
    private const byte PointerEvent = 5;
    private const byte ClientCutText = 6;
    private const byte Qemu = 255;
    private const byte QemuExtendedKeyEvent = 0;

    private enum Phase { Version, SecurityType, VncAuthResponse, ClientInit, UntilSetEncodings, Messages }

    private Phase _phase = Phase.Version;
    /// <summary>Handshake bytes still to come in the current phase.</summary>
    private int _remaining = VersionLength;
    /// <summary>The ProtocolVersion's minor number's last two digits, to tell RFB 3.3 ("003.003") apart.</summary>
    private byte _minorTens;
    private byte _minorUnits;
    /// <summary>The handshake ended with a chunk inside a WebSocket message: the next byte starts the first client message.</summary>
    private bool _startPending;

    /// <summary>Whether the handshake is over as far as this can tell (for tests and diagnostics).</summary>
    internal bool PastHandshake => _phase == Phase.Messages;

    /// <summary>One chunk of viewer → session bytes; <paramref name="startOfMessage"/>: it begins a WebSocket message.</summary>
    public void Observe(ReadOnlySpan<byte> data, bool startOfMessage)
    {
        while (_phase < Phase.UntilSetEncodings && !data.IsEmpty)
        {
            var take = Math.Min(_remaining, data.Length);
            if (_phase == Phase.Version)
            {
                // "RFB 003.008\n": the minor number's last two digits are at offsets 9 and 10.
                for (var i = 0; i < take; i++)
                {
                    var offset = VersionLength - _remaining + i;
                    if (offset == 9) _minorTens = data[i];
                    else if (offset == 10) _minorUnits = data[i];
                }
            }
            var last = data[take - 1];
            data = data[take..];
            _remaining -= take;
            // Bytes after the handshake in the same chunk start the first client message.
            startOfMessage = true;
            if (_remaining > 0) return;
            (_phase, _remaining) = _phase switch
            {
                Phase.Version when _minorTens == '0' && _minorUnits == '3' => (Phase.UntilSetEncodings, 0),
                Phase.Version => (Phase.SecurityType, 1),
                Phase.SecurityType when last == SecurityNone => (Phase.ClientInit, 1),
                Phase.SecurityType when last == SecurityVncAuth => (Phase.VncAuthResponse, VncAuthResponseLength),
                Phase.SecurityType => (Phase.UntilSetEncodings, 0),
                Phase.VncAuthResponse => (Phase.ClientInit, 1),
                _ => (Phase.Messages, 0),
            };
        }
        if (data.IsEmpty)
        {
            _startPending |= _phase >= Phase.UntilSetEncodings && startOfMessage;
            return;
        }
        startOfMessage |= _startPending;
        _startPending = false;
        if (!startOfMessage) return;
        if (_phase == Phase.UntilSetEncodings)
        {
            if (data[0] != SetEncodings) return;
            _phase = Phase.Messages;
        }
        if (IsInput(data)) onInput();
    }

    /// <summary>Whether the client message that starts <paramref name="message"/> is a person's input.</summary>
    private static bool IsInput(ReadOnlySpan<byte> message) => message[0] switch
    {
        KeyEvent or PointerEvent => true,
        // The length's sign bit (offset 4) marks an extended-clipboard message; too short to tell counts as input.
        ClientCutText => message.Length < 5 || (message[4] & 0x80) == 0,
        Qemu => message.Length >= 2 && message[1] == QemuExtendedKeyEvent,
        _ => false,
    };
}
