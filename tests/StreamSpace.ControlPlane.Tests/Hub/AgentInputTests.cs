using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// Bad input from one agent closes that agent's socket with 1008 (contract §3) and is logged; another
/// agent stays online and keeps receiving its commands; nothing turns into a 500.
/// </summary>
public abstract class AgentInputTests(HubControlPlane cp)
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    private async Task<ScriptedAgent> BystanderAsync()
    {
        var (agentId, token) = await cp.CreateAgentAsync("bystander");
        return await cp.OnlineAgentAsync(agentId, token);
    }

    /// <summary>The well-behaved agent is still online and still gets (and completes) commands.</summary>
    private async Task BystanderStillWorksAsync(ScriptedAgent bystander)
    {
        (await cp.AgentRowAsync(bystander.AgentId))!.Status.ShouldBe(AgentStatus.Online);
        var sessionId = await cp.CreateSessionAsync(bystander.AgentId, SessionState.Pending);
        var commandId = await cp.EnqueueAsync(bystander.AgentId, sessionId, CommandTypes.SessionStart);
        (await bystander.ExpectCommandAsync()).CommandId.ShouldBe(commandId);
        await bystander.AckAsync(commandId);
        await bystander.ResultAsync(commandId, success: true);
        await cp.SessionStateIsAsync(sessionId, SessionState.Running, Soon);
    }

    private async Task<ScriptedAgent> TroublemakerAsync(bool hello)
    {
        var (agentId, token) = await cp.CreateAgentAsync("bad");
        return hello ? await cp.OnlineAgentAsync(agentId, token) : await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Malformed_json_closes_the_connection_with_1008(bool afterHello)
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(afterHello);
        await bad.SendTextAsync("{\"v\":1,\"type\":\"heartbeat\",\"id\":\"x\",\"payload\":{");
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        await cp.AgentStatusIsAsync(bad.AgentId, AgentStatus.Offline, Soon);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task A_payload_of_the_wrong_shape_closes_the_connection_with_1008()
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: true);
        await bad.SendTextAsync("{\"v\":1,\"type\":\"ack\",\"id\":\"x\",\"payload\":{\"commandId\":42}}");
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task An_unsupported_protocol_version_is_refused_with_a_reason_and_closed()
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: false);
        (await bad.HelloAsync(version: 99)).ShouldBeNull();
        var refused = await bad.NextAsync(Soon);
        // HelloAsync consumed the answer; it was a refusal, so the socket is closing now.
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        refused.ShouldBeNull("nothing follows the refusal");
        (await cp.AgentRowAsync(bad.AgentId))!.Status.ShouldBe(AgentStatus.Offline);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task The_refusal_names_its_reason()
    {
        var (agentId, token) = await cp.CreateAgentAsync("bad");
        await using var bad = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token);
        await bad.SendTextAsync("{\"v\":99,\"type\":\"hello\",\"id\":\"x\",\"payload\":{}}");
        var refused = await bad.NextAsync(Soon);
        refused.ShouldNotBeNull();
        refused.Type.ShouldBe(MessageTypes.Refused);
        var payload = refused.PayloadAs<RefusedPayload>();
        payload.Code.ShouldBe("unsupported_version");
        payload.Reason.ShouldContain("99");
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
    }

    [Fact]
    public async Task A_hello_claiming_another_agents_id_is_refused_and_the_other_agent_is_untouched()
    {
        await using var bystander = await BystanderAsync();
        var bystanderConnection = (await cp.AgentRowAsync(bystander.AgentId))!.ConnectionId;
        await using var bad = await TroublemakerAsync(hello: false);
        (await bad.HelloAsync(claimedAgentId: bystander.AgentId)).ShouldBeNull();
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        (await cp.AgentRowAsync(bad.AgentId))!.Status.ShouldBe(AgentStatus.Offline);
        (await cp.AgentRowAsync(bystander.AgentId))!.ConnectionId.ShouldBe(bystanderConnection);
        await BystanderStillWorksAsync(bystander);
    }

    /// <summary>
    /// System.Text.Json accepts null even for required members, so a hello with a null where an object, list or text
    /// belongs reaches validation: the agent must learn why it is refused (invariant 7) instead of seeing its socket
    /// drop and retrying blindly. A payload that does not read as a hello at all (a number where an object belongs, a
    /// number as text) is refused the same way, as protocol.md says.
    /// </summary>
    [Theory]
    [InlineData("{\"capacity\":5}", "capacity")]
    [InlineData("{\"capacity\":{\"maxSessions\":\"3\",\"activeSessions\":0}}", "maxSessions")]
    [InlineData("{\"inventory\":{}}", "inventory")]
    [InlineData("{\"capacity\":null}", "capacity")]
    [InlineData("{\"inventory\":null}", "inventory")]
    [InlineData("{\"inventory\":[null]}", "inventory")]
    [InlineData("{\"inventory\":[{\"sessionId\":null,\"state\":\"running\"}]}", "sessionId")]
    [InlineData("{\"inventory\":[{\"sessionId\":\"s-1\",\"state\":null}]}", "state")]
    [InlineData("{\"platform\":null}", "platform")]
    [InlineData("{\"version\":null}", "version")]
    public async Task A_hello_with_a_null_or_wrongly_shaped_field_is_refused_with_a_reason(string nulls, string named)
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: false);
        var payload = JsonSerializer.SerializeToNode(new HelloPayload
        {
            AgentId = bad.AgentId, Version = "test-1.0", Platform = Platforms.Process, Region = "default",
            Capacity = new AgentCapacity { MaxSessions = 10 },
        }, ProtocolJson.Options)!.AsObject();
        foreach (var (key, value) in JsonNode.Parse(nulls)!.AsObject()) payload[key] = value?.DeepClone();
        await bad.SendTextAsync(new JsonObject { ["v"] = ProtocolVersion.Current, ["type"] = MessageTypes.Hello, ["id"] = "h1", ["payload"] = payload }.ToJsonString());

        await RefusedAsync(bad, "invalid_hello", named, $"the hello with {nulls}");
        await BystanderStillWorksAsync(bystander);
    }

    /// <summary>A null where a report needs an id or a state is the wrong shape: refused as malformed with the field named, never an exception.</summary>
    [Theory]
    [InlineData(MessageTypes.Ack, "{\"commandId\":null}", "commandId")]
    [InlineData(MessageTypes.Result, "{\"commandId\":null,\"success\":true}", "commandId")]
    [InlineData(MessageTypes.SessionStatus, "{\"sessionId\":null,\"state\":\"crashed\"}", "sessionId")]
    [InlineData(MessageTypes.SessionStatus, "{\"sessionId\":\"s-1\",\"state\":null}", "state")]
    [InlineData(MessageTypes.Heartbeat, "{\"activeSessions\":null,\"maxSessions\":10}", "activeSessions")]
    [InlineData(MessageTypes.Heartbeat, "null", "null payload")]
    public async Task A_report_with_a_null_field_is_refused_with_a_reason(string type, string payload, string named)
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: true);
        await bad.SendTextAsync($"{{\"v\":1,\"type\":\"{type}\",\"id\":\"x\",\"payload\":{payload}}}");

        await RefusedAsync(bad, "malformed", named, $"the {type} with {payload}");
        await BystanderStillWorksAsync(bystander);
    }

    /// <summary>
    /// A field given twice is ambiguous (which one did the agent mean?), so it is refused naming the field instead of the
    /// last one silently winning: an envelope saying both heartbeat and hello was taken as a hello.
    /// </summary>
    [Fact]
    public async Task A_hello_envelope_with_a_repeated_type_is_refused_naming_it()
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: false);
        var payload = JsonSerializer.Serialize(new HelloPayload
        {
            AgentId = bad.AgentId, Version = "test-1.0", Platform = Platforms.Process, Region = "default",
            Capacity = new AgentCapacity { MaxSessions = 10 },
        }, ProtocolJson.Options);
        await bad.SendTextAsync($$"""{"v":1,"type":"heartbeat","type":"hello","id":"h1","payload":{{payload}}}""");

        await RefusedAsync(bad, "malformed", "'type'", "the envelope with 'type' twice");
        await BystanderStillWorksAsync(bystander);
    }

    /// <summary>A repeated field, or a number sent as text (the protocol's numbers are JSON numbers), is the wrong shape.</summary>
    [Theory]
    [InlineData(MessageTypes.SessionStatus, "{\"sessionId\":\"s-1\",\"state\":\"crashed\",\"state\":\"running\"}", "'payload.state'")]
    [InlineData(MessageTypes.Ack, "{\"commandId\":\"c-1\",\"CommandId\":\"c-2\"}", "ommandId'")]
    [InlineData(MessageTypes.Heartbeat, "{\"activeSessions\":\"3\",\"maxSessions\":10}", "'activeSessions'")]
    public async Task A_report_with_a_repeated_field_or_a_number_as_text_is_refused_naming_it(string type, string payload, string named)
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: true);
        await bad.SendTextAsync($"{{\"v\":1,\"type\":\"{type}\",\"id\":\"x\",\"payload\":{payload}}}");

        await RefusedAsync(bad, "malformed", named, $"the {type} with {payload}");
        await BystanderStillWorksAsync(bystander);
    }

    /// <summary>
    /// A state outside the protocol's list (a typo, "Running", a newer agent's state) is the wrong shape: the hello is
    /// refused naming the item, never welcomed with the session dropped from the inventory, which failed the running
    /// session as lost on its agent and had the next hello stop it.
    /// </summary>
    [Theory]
    [InlineData("bogus")]
    [InlineData("Running")]
    public async Task A_hello_with_an_unknown_inventory_state_is_refused_and_the_running_session_left_alone(string state)
    {
        var (agentId, token) = await cp.CreateAgentAsync("states");
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Running);
        await using (var bad = await ScriptedAgent.ConnectAsync(cp.BaseAddress, agentId, token))
        {
            await bad.SendHelloAsync([new SessionInventoryItem { SessionId = sessionId, State = state }]);
            var why = await RefusedAsync(bad, "invalid_hello", sessionId, $"the hello with state '{state}'");
            why.ShouldContain($"'{state}'");
        }
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Running);

        await using var agent = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = sessionId, State = ObservedStates.Running }]);
        await agent.ExpectNothingAsync(TimeSpan.FromSeconds(1));
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Running);
    }

    /// <summary>A <c>session.status</c> with a state outside the protocol's list is malformed (protocol.md), not "no change".</summary>
    [Fact]
    public async Task A_session_status_with_an_unknown_state_is_refused_as_malformed()
    {
        var (agentId, token) = await cp.CreateAgentAsync("states");
        var sessionId = await cp.CreateSessionAsync(agentId, SessionState.Running);
        await using var bad = await cp.OnlineAgentAsync(agentId, token, [new SessionInventoryItem { SessionId = sessionId, State = ObservedStates.Running }]);
        await bad.StatusAsync(sessionId, "bogus", "x");

        (await RefusedAsync(bad, "malformed", "'state'", "the session.status with state 'bogus'")).ShouldContain("'bogus'");
        (await cp.SessionRowAsync(sessionId)).State.ShouldBe(SessionState.Running);
    }

    /// <summary>The agent got a refusal with <paramref name="code"/> and a reason naming <paramref name="named"/>, was closed (1008) and is offline.</summary>
    private async Task<string> RefusedAsync(ScriptedAgent bad, string code, string named, string what)
    {
        var refused = await bad.NextAsync(Soon);
        refused.ShouldNotBeNull($"{what} got no answer");
        refused.Type.ShouldBe(MessageTypes.Refused);
        var why = refused.PayloadAs<RefusedPayload>();
        why.Code.ShouldBe(code);
        why.Reason.ShouldContain(named);
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        await cp.AgentStatusIsAsync(bad.AgentId, AgentStatus.Offline, Soon);
        return why.Reason;
    }

    [Fact]
    public async Task A_ten_mebibyte_frame_is_refused_without_buffering_it()
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: true);
        var huge = Encoding.UTF8.GetBytes("{\"v\":1,\"type\":\"heartbeat\",\"id\":\"x\",\"payload\":{\"pad\":\"" + new string('a', 10 * 1024 * 1024) + "\"}}");
        try
        {
            await bad.SendRawAsync(huge);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            // The control plane closed the socket while the frame was still being sent.
        }
        await bad.ClosedByServerAsync(Soon);
        await cp.AgentStatusIsAsync(bad.AgentId, AgentStatus.Offline, Soon);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task A_binary_frame_closes_the_connection_with_1008()
    {
        await using var bystander = await BystanderAsync();
        await using var bad = await TroublemakerAsync(hello: true);
        await bad.SendRawAsync([1, 2, 3], WebSocketMessageType.Binary);
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task A_first_message_that_is_not_hello_is_refused()
    {
        await using var bad = await TroublemakerAsync(hello: false);
        await bad.HeartbeatAsync();
        var refused = await bad.NextAsync(Soon);
        refused!.PayloadAs<RefusedPayload>().Code.ShouldBe("expected_hello");
        (await bad.ClosedByServerAsync(Soon)).ShouldBe(WebSocketCloseStatus.PolicyViolation);
    }

    [Fact]
    public async Task A_connection_that_never_says_hello_is_closed_after_the_hello_timeout()
    {
        await using var bystander = await BystanderAsync();
        await using var mute = await TroublemakerAsync(hello: false);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await mute.ClosedByServerAsync(TimeSpan.FromSeconds(6));
        watch.Elapsed.ShouldBeGreaterThan(TimeSpan.FromSeconds(1.5), "not before the 2 s hello timeout");
        (await cp.AgentRowAsync(mute.AgentId))!.Status.ShouldBe(AgentStatus.Offline);
        await BystanderStillWorksAsync(bystander);
    }

    [Fact]
    public async Task An_unknown_message_type_is_logged_and_ignored_as_the_contract_says()
    {
        await using var agent = await TroublemakerAsync(hello: true);
        await agent.SendAsync("telemetry.v2", new { cpu = 0.5 });
        await BystanderStillWorksAsync(agent);
        agent.IsOpen.ShouldBeTrue();
    }

    [Fact]
    public async Task The_server_stays_healthy_after_all_of_it()
    {
        await using var bad = await TroublemakerAsync(hello: true);
        await bad.SendTextAsync("not json at all");
        await bad.ClosedByServerAsync(Soon);
        var health = await cp.Client().GetAsync("/healthz", TestContext.Current.CancellationToken);
        health.IsSuccessStatusCode.ShouldBeTrue();
    }
}

[Trait("Category", "Timing")]
public sealed class AgentInputTests_Sqlite(HubSqliteControlPlane cp) : AgentInputTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class AgentInputTests_Postgres(HubPostgresControlPlane cp) : AgentInputTests(cp), IClassFixture<HubPostgresControlPlane>;
