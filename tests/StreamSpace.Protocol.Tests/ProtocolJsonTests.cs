using System.Text;
using System.Text.Json;

namespace StreamSpace.Protocol.Tests;

public class ProtocolJsonTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    [Fact]
    public void Envelope_round_trips_with_typed_payload()
    {
        var hello = new HelloPayload
        {
            AgentId = "agent-1",
            Version = "1.2.3",
            Platform = Platforms.Process,
            Region = "eu",
            Capacity = new AgentCapacity { MaxSessions = 10, ActiveSessions = 1 },
            Inventory = [new SessionInventoryItem { SessionId = "alice-xterm-abcdef", State = ObservedStates.Running }],
        };
        var frame = ProtocolJson.Encode(Envelope.Create(MessageTypes.Hello, hello, Now));

        ProtocolJson.TryDecode(frame, out var envelope, out var error).ShouldBeTrue(error);
        envelope!.V.ShouldBe(ProtocolVersion.Current);
        envelope.Type.ShouldBe("hello");
        envelope.Ts.ShouldBe(Now);
        var decoded = envelope.PayloadAs<HelloPayload>();
        decoded.ShouldBe(hello with { Inventory = decoded.Inventory });
        decoded.Inventory.ShouldBe(hello.Inventory);
        // camelCase on the wire
        Encoding.UTF8.GetString(frame).ShouldContain("\"agentId\":\"agent-1\"");
    }

    [Theory]
    [InlineData("""{"agentId":"a","version":"1","platform":"process","capacity":{"maxSessions":"ten"},"inventory":[]}""",
        "'hello' payload is malformed: 'capacity.maxSessions' must be a whole number.")]
    [InlineData("""{"agentId":"a","version":"1","platform":"process","capacity":[],"inventory":[]}""",
        "'hello' payload is malformed: 'capacity' must be a JSON object.")]
    [InlineData("""{"agentId":"a","version":"1","platform":"process","inventory":[]}""",
        "'hello' payload is malformed: Required field(s) missing: capacity.")]
    [InlineData("""[]""", "'hello' payload is malformed: The payload must be a JSON object with the fields ")]
    [InlineData("""{"agentId":"a\ud800","version":"1","platform":"process","capacity":{},"inventory":[]}""",
        "'hello' payload is malformed: ")]
    public void A_payload_that_does_not_fit_is_refused_naming_the_field_not_a_dotnet_type(string payload, string message)
    {
        var frame = Encoding.UTF8.GetBytes($$"""{"v":1,"type":"hello","id":"m1","ts":"2026-01-02T03:04:05Z","payload":{{payload}}}""");
        ProtocolJson.TryDecode(frame, out var envelope, out var error).ShouldBeTrue(error);
        Should.Throw<ProtocolException>(() => envelope!.PayloadAs<HelloPayload>()).Message.ShouldStartWith(message);
    }

    [Fact]
    public void Unknown_fields_in_envelope_and_payload_are_ignored()
    {
        var json = """
            {"v":1,"type":"welcome","id":"m1","ts":"2026-01-02T03:04:05Z","future":{"x":1},
             "payload":{"heartbeatIntervalSeconds":7,"acceptedVersion":1,"connectionId":"c-1","compression":"zstd"}}
            """;
        ProtocolJson.TryDecode(Encoding.UTF8.GetBytes(json), out var envelope, out var error).ShouldBeTrue(error);
        var welcome = envelope!.PayloadAs<WelcomePayload>();
        welcome.HeartbeatIntervalSeconds.ShouldBe(7);
        welcome.ConnectionId.ShouldBe("c-1");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(99)]
    public void Unsupported_version_is_refused_with_a_reason(int version)
    {
        var json = "{\"v\":" + version + ",\"type\":\"hello\",\"id\":\"m1\",\"payload\":{}}";
        ProtocolJson.TryDecode(Encoding.UTF8.GetBytes(json), out _, out var error).ShouldBeFalse();
        error.ShouldNotBeNull();
        error.ShouldContain($"version {version} is not supported");
    }

    [Fact]
    public void Frame_over_the_limit_is_refused_without_parsing()
    {
        var frame = new byte[10 * 1024 * 1024];
        frame.AsSpan().Fill((byte)' ');
        ProtocolJson.TryDecode(frame, out var envelope, out var error).ShouldBeFalse();
        envelope.ShouldBeNull();
        error!.ShouldContain("exceeds");
    }

    [Fact]
    public void Frame_at_the_limit_is_accepted()
    {
        var prefix = """{"v":1,"type":"heartbeat","id":"m1","payload":{"activeSessions":1},"pad":" """;
        var padding = ProtocolJson.MaxFrameBytes - prefix.Length - 2;
        var json = prefix + new string('x', padding) + "\"}";
        Encoding.UTF8.GetByteCount(json).ShouldBe(ProtocolJson.MaxFrameBytes);
        ProtocolJson.TryDecode(Encoding.UTF8.GetBytes(json), out _, out var error).ShouldBeTrue(error);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[1,2]")]
    [InlineData("""{"v":1,"id":"m1"}""")]
    [InlineData("""{"v":1,"type":"hello"}""")]
    public void Malformed_frames_are_refused(string json)
    {
        ProtocolJson.TryDecode(Encoding.UTF8.GetBytes(json), out var envelope, out var error).ShouldBeFalse();
        envelope.ShouldBeNull();
        error.ShouldNotBeNullOrWhiteSpace();
    }

    /// <summary>A field given twice is ambiguous: refused naming it, never "the last one wins" (a heartbeat that also says hello).</summary>
    [Theory]
    [InlineData("""{"v":1,"type":"heartbeat","type":"hello","id":"m1","payload":{}}""", "'type' appears more than once in this message.")]
    [InlineData("""{"v":1,"type":"session.status","id":"m1","payload":{"sessionId":"s-1","state":"crashed","state":"running"}}""",
        "'payload.state' appears more than once in this message.")]
    [InlineData("""{"v":"1","type":"heartbeat","id":"m1","payload":{}}""", "'v' must be a whole number.")]
    public void An_envelope_with_a_field_twice_or_a_number_as_text_is_refused_naming_the_field(string json, string message)
    {
        ProtocolJson.TryDecode(Encoding.UTF8.GetBytes(json), out var envelope, out var error).ShouldBeFalse();
        envelope.ShouldBeNull();
        error.ShouldBe(message);
    }

    [Theory]
    [InlineData("""{"agentId":"a","version":"1","platform":"process","capacity":{"maxSessions":"10"},"inventory":[]}""",
        "'hello' payload is malformed: 'capacity.maxSessions' must be a whole number.")]
    [InlineData("""{"agentId":"a","AgentId":"b","version":"1","platform":"process","capacity":{},"inventory":[]}""",
        "'hello' payload is malformed: 'agentId' appears more than once in this message.")]
    public void A_payload_with_a_number_as_text_or_a_field_twice_in_two_spellings_is_refused_naming_it(string payload, string message)
    {
        var frame = Encoding.UTF8.GetBytes($$"""{"v":1,"type":"hello","id":"m1","payload":{{payload}}}""");
        ProtocolJson.TryDecode(frame, out var envelope, out var error).ShouldBeTrue(error);
        Should.Throw<ProtocolException>(() => envelope!.PayloadAs<HelloPayload>()).Message.ShouldBe(message);
    }

    [Fact]
    public void Payload_that_does_not_fit_throws_protocol_exception()
    {
        var envelope = new Envelope { Type = MessageTypes.Command, Id = "m1", Payload = JsonSerializer.SerializeToElement(new { commandId = 5 }) };
        Should.Throw<ProtocolException>(() => envelope.PayloadAs<CommandPayload>());
        var empty = new Envelope { Type = MessageTypes.Command, Id = "m2" };
        Should.Throw<ProtocolException>(() => empty.PayloadAs<CommandPayload>()).Message.ShouldContain("no payload");
    }

    [Fact]
    public void Null_optional_fields_are_left_out()
    {
        var frame = Encoding.UTF8.GetString(ProtocolJson.Encode(Envelope.Create(MessageTypes.Ack, new AckPayload { CommandId = "c1" }, Now)));
        frame.ShouldNotContain("\"re\"");
    }
}
