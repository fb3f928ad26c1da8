using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class AgentsApiTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Admin_registers_an_agent_and_gets_its_token_once()
    {
        var admin = await cp.AdminClientAsync();
        var agentId = ControlPlaneFixture.Unique("worker-");

        var created = await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        created.GetProperty("agentId").GetString().ShouldBe(agentId);
        var token = created.GetProperty("token").GetString()!;
        token.ShouldStartWith("ssa_");

        var stored = await cp.ScalarAsync<string>("SELECT token_hash FROM agents WHERE agent_id = @agentId", new { agentId });
        stored.ShouldBe(AgentTokens.Hash(token));
        stored.ShouldNotContain(token);

        var agent = await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        agent.GetProperty("agentId").GetString().ShouldBe(agentId);
        agent.GetProperty("status").GetString().ShouldBe("offline");
        agent.GetProperty("platform").GetString().ShouldBe("process");
        agent.GetProperty("region").GetString().ShouldBe("default");
        agent.GetProperty("capacity").GetInt32().ShouldBe(10);
        agent.GetProperty("activeSessions").GetInt32().ShouldBe(0);
        agent.GetProperty("draining").GetBoolean().ShouldBeFalse();
        agent.GetProperty("adminDraining").GetBoolean().ShouldBeFalse();
        agent.GetProperty("agentDraining").GetBoolean().ShouldBeFalse();
        agent.GetProperty("lastHeartbeat").ValueKind.ShouldBe(JsonValueKind.Null);
        agent.GetProperty("version").ValueKind.ShouldBe(JsonValueKind.Null);
        agent.GetProperty("connectedAt").ValueKind.ShouldBe(JsonValueKind.Null);
        agent.TryGetProperty("token", out _).ShouldBeFalse();
        agent.TryGetProperty("tokenHash", out _).ShouldBeFalse();

        var list = await (await admin.GetAsync("/api/v1/agents", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        list.EnumerateArray().Select(a => a.GetProperty("agentId").GetString()).ShouldContain(agentId);

        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId, platform = "docker" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.created' AND target = @agentId", new { agentId })).ShouldBe(1);
    }

    [Fact]
    public async Task Registration_takes_platform_region_and_capacity()
    {
        var admin = await cp.AdminClientAsync();
        var agentId = ControlPlaneFixture.Unique("k8s.worker_");
        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId, platform = "kubernetes", region = "eu-west-1", maxSessions = 250 }, Ct))
            .ShouldBeJsonAsync(HttpStatusCode.Created);
        var agent = await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        agent.GetProperty("platform").GetString().ShouldBe("kubernetes");
        agent.GetProperty("region").GetString().ShouldBe("eu-west-1");
        agent.GetProperty("capacity").GetInt32().ShouldBe(250);
    }

    [Fact]
    public async Task Bad_registrations_are_400_naming_the_field()
    {
        var admin = await cp.AdminClientAsync();

        async Task ExpectFieldAsync(object body, string field)
        {
            var json = await (await admin.PostAsJsonAsync("/api/v1/agents", body, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
            json.GetProperty("fields").TryGetProperty(field, out _).ShouldBeTrue($"fields should name {field}: {json}");
        }

        await ExpectFieldAsync(new { }, "agentId");
        await ExpectFieldAsync(new { agentId = "" }, "agentId");
        await ExpectFieldAsync(new { agentId = "Upper" }, "agentId");
        await ExpectFieldAsync(new { agentId = "-leading" }, "agentId");
        await ExpectFieldAsync(new { agentId = new string('a', 64) }, "agentId");
        await ExpectFieldAsync(new { agentId = "has space" }, "agentId");
        await ExpectFieldAsync(new { agentId = "ok-1", platform = "windows" }, "platform");
        await ExpectFieldAsync(new { agentId = "ok-1", region = "" }, "region");
        await ExpectFieldAsync(new { agentId = "ok-1", maxSessions = 0 }, "maxSessions");
        await ExpectFieldAsync(new { agentId = "ok-1", maxSessions = 10001 }, "maxSessions");

        foreach (var raw in new[] { "{", "null", "", "[]", """{"agentId": 7}""", """{"agentId": "ok-1", "maxSessions": "ten"}""", """{"agentId": "ok-1", "token": "mine"}""" })
            await (await admin.PostRawAsync("/api/v1/agents", raw)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);

        await (await admin.GetAsync("/api/v1/agents/ok-1", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Ids_that_name_a_literal_agents_route_are_refused_saying_why()
    {
        // GET /api/v1/agents/connect is the hub's WebSocket and /api/v1/agents/streams/{id} the data sockets' route:
        // an agent under either id could never be read, drained or deleted.
        var admin = await cp.AdminClientAsync();
        foreach (var agentId in new[] { "connect", "streams" })
        {
            var json = await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
            json.GetProperty("fields").GetProperty("agentId").GetString()
                .ShouldBe($"'{agentId}' is reserved: /api/v1/agents/{agentId} is a route of its own, so the agent could not be read or managed");
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agents WHERE agent_id = @agentId", new { agentId })).ShouldBe(0);
        }
        // Only the exact ids: a name that merely starts with one is an ordinary agent.
        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId = ControlPlaneFixture.Unique("connect-") }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
    }

    [Fact]
    public async Task Users_are_forbidden_and_anonymous_callers_unauthorized()
    {
        var (user, _, _) = await cp.QuickUserAsync("plain");
        await (await user.GetAsync("/api/v1/agents", Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.GetAsync("/api/v1/agents/any", Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.PostAsJsonAsync("/api/v1/agents", new { agentId = "sneaky" }, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.PostAsync("/api/v1/agents/any/drain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.DeleteAsync("/api/v1/agents/any", Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await cp.Client().GetAsync("/api/v1/agents", Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM agents WHERE agent_id = 'sneaky'")).ShouldBe(0);
    }

    [Fact]
    public async Task Only_admins_lift_a_drain_or_rotate_a_token()
    {
        var admin = await cp.AdminClientAsync();
        var agentId = ControlPlaneFixture.Unique("guarded-");
        var token = (await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("token").GetString()!;
        await (await admin.PostAsync($"/api/v1/agents/{agentId}/drain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        var (user, _, _) = await cp.QuickUserAsync("plain");
        await (await user.PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await cp.Client().PostAsync($"/api/v1/agents/{agentId}/undrain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await (await cp.Client().PostAsync($"/api/v1/agents/{agentId}/rotate-token", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);

        // Nothing changed: still drained by the admin, still the same token, nothing audited.
        var agent = await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        agent.GetProperty("adminDraining").GetBoolean().ShouldBeTrue();
        (await cp.ScalarAsync<string>("SELECT token_hash FROM agents WHERE agent_id = @agentId", new { agentId })).ShouldBe(AgentTokens.Hash(token));
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action IN ('agent.undrained', 'agent.token_rotated') AND target = @agentId", new { agentId })).ShouldBe(0);
    }

    [Fact]
    public async Task Drain_stops_placement_and_delete_waits_for_live_sessions()
    {
        var admin = await cp.AdminClientAsync();
        var agentId = ControlPlaneFixture.Unique("drain-");
        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        await cp.InsertAgentAsync(agentId); // online, as after a heartbeat
        var (_, userId, username) = await cp.QuickUserAsync("drainee");
        await cp.InsertSessionAsync($"{username}-xterm-live01", userId, username, "running", agentId);
        await cp.InsertSessionAsync($"{username}-xterm-live02", userId, username, "hibernated", agentId);
        await cp.InsertSessionAsync($"{username}-xterm-gone01", userId, username, "failed", agentId);

        var shown = await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        shown.GetProperty("activeSessions").GetInt32().ShouldBe(2);
        shown.GetProperty("status").GetString().ShouldBe("online");

        var drained = await (await admin.PostAsync($"/api/v1/agents/{agentId}/drain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        drained.GetProperty("draining").GetBoolean().ShouldBeTrue();
        await (await admin.PostAsync($"/api/v1/agents/{agentId}/drain", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        await (await admin.PostAsync("/api/v1/agents/no-such-agent/drain", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.drained' AND target = @agentId", new { agentId })).ShouldBe(2);

        var conflict = await (await admin.DeleteAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        conflict.GetProperty("message").GetString()!.ShouldContain("2 live sessions");
        conflict.TryGetProperty("unconfirmedSessions", out _).ShouldBeFalse("force does not override live sessions, so the UI offers none");
        conflict.GetProperty("message").GetString()!.ShouldContain("delete them first");

        // Sessions already being stopped need the agent, not another delete: the 409 says which they are.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE sessions SET state = 'terminating' WHERE id = @id", new { id = $"{username}-xterm-live01" });
        var partly = (await (await admin.DeleteAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict)).GetProperty("message").GetString()!;
        partly.ShouldContain("2 live sessions (1 of them being stopped)");
        partly.ShouldContain("delete the others first");
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE sessions SET state = 'terminating' WHERE agent_id = @agentId AND state = 'hibernated'", new { agentId });
        var stopping = (await (await admin.DeleteAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict)).GetProperty("message").GetString()!;
        stopping.ShouldContain("2 live sessions, all being stopped: wait until the agent confirms the stops");
        stopping.ShouldNotContain("delete them");
        // The host may be gone for good (a stop it answered failed waits for its next hello, which never comes): force ends
        // them here, so the refusal carries the count the UI offers "Delete anyway" for. It never ends other live sessions.
        var stoppingRefusal = await (await admin.DeleteAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        stoppingRefusal.GetProperty("unconfirmedSessions").GetInt64().ShouldBe(2);
        stoppingRefusal.GetProperty("message").GetString()!.ShouldContain($"or delete with ?force=true (DELETE /api/v1/agents/{agentId}?force=true), which ends them here");
        (await admin.DeleteAsync($"/api/v1/agents/{agentId}?force=true", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        foreach (var id in new[] { $"{username}-xterm-live01", $"{username}-xterm-live02" })
        {
            var ended = await (await admin.GetAsync($"/api/v1/sessions/{id}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
            ended.GetProperty("state").GetString().ShouldBe("terminated");
            ended.GetProperty("stateReason").GetString().ShouldBe($"agent {agentId} was deleted (forced) before it confirmed the stop; the session may still run on its host");
        }
        (await cp.ScalarAsync<string>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId", new { agentId }))
            .ShouldBe("forced; 2 session(s) the agent had not confirmed stopping left to it");
        await (await admin.GetAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await admin.DeleteAsync($"/api/v1/agents/{agentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId", new { agentId })).ShouldBe(1);
    }

    [Fact]
    public async Task Concurrent_deletes_of_one_agent_delete_it_once_and_answer_the_others_404()
    {
        var admin = await cp.AdminClientAsync();
        var (agentId, _) = await cp.RegisterAgentAsync("twicegone-");
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            using var response = await admin.DeleteAsync($"/api/v1/agents/{agentId}{(i % 2 == 1 ? "?force=true" : "")}", Ct);
            if (response.StatusCode == HttpStatusCode.NoContent) return "deleted";
            (await response.ShouldBeErrorAsync(HttpStatusCode.NotFound)).GetProperty("message").GetString().ShouldBe($"There is no agent '{agentId}'.");
            return "not found";
        }));
        answers.Count(a => a == "deleted").ShouldBe(1);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId", new { agentId })).ShouldBe(1);
    }

    [Fact]
    public async Task Delete_refuses_while_the_agent_may_still_run_a_session_whose_stop_expired_unless_forced()
    {
        var admin = await cp.AdminClientAsync();
        var (owner, userId, username) = await cp.QuickUserAsync("unconfirmed");
        // Two offline agents, each with a session its user deleted: the stop waits for the agent, then expires, and the
        // session ends terminated "when it reconnects". Only one of them connects once after that.
        var away = await AgentWithExpiredStopAsync("away-");
        var back = await AgentWithExpiredStopAsync("back-");
        // Its hello (an empty inventory: nothing left to stop) is what its reconnect would have settled.
        await (await Hub.ScriptedAgent.OnlineAsync(cp.BaseAddress, back.AgentId, back.Token, heartbeat: false)).DisposeAsync();

        // Away longer than finished commands are kept: the expired stop says so as long as the agent stays away.
        await using (var conn = await cp.Db.OpenAsync(Ct))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE agent_commands SET updated_at = @old, next_attempt_at = @old WHERE agent_id = @agentId",
                new { old = DateTimeOffset.UtcNow.AddDays(-8), agentId = away.AgentId });
        await new Commands.CommandPruner(cp.Db, TimeProvider.System, Microsoft.Extensions.Options.Options.Create(new Hosting.StreamSpaceOptions()),
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Commands.CommandPruner>.Instance).PruneAsync(Ct);

        var refused = await (await admin.DeleteAsync($"/api/v1/agents/{away.AgentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        refused.GetProperty("error").GetString().ShouldBe("Conflict");
        refused.GetProperty("unconfirmedSessions").GetInt64().ShouldBe(1);
        var message = refused.GetProperty("message").GetString()!;
        message.ShouldContain("1 session ");
        message.ShouldContain("Bring the agent online once so it stops them");
        message.ShouldContain("?force=true");
        await (await admin.GetAsync($"/api/v1/agents/{away.AgentId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        var bad = await (await admin.DeleteAsync($"/api/v1/agents/{away.AgentId}?force=yes", Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        bad.GetProperty("fields").GetProperty("force").GetString().ShouldBe("must be true or false");

        (await admin.DeleteAsync($"/api/v1/agents/{back.AgentId}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        (await admin.DeleteAsync($"/api/v1/agents/{away.AgentId}?force=true", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        await (await admin.GetAsync($"/api/v1/agents/{away.AgentId}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        (await cp.ScalarAsync<string>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId", new { agentId = away.AgentId }))
            .ShouldStartWith("forced; 1 session(s)");
        (await cp.ScalarAsync<string?>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId", new { agentId = back.AgentId }))
            .ShouldBeNull();
        // Registered again under the forced-away agent's id (another host takes the name): its predecessor's expired
        // stop is not this agent's, so it is not counted against it and never connecting does not keep it.
        await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId = away.AgentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        (await admin.DeleteAsync($"/api/v1/agents/{away.AgentId}?force=true", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        // ?force=true where nothing needed forcing is an ordinary delete on the record (it said "forced; 0 session(s) ...").
        (await cp.ScalarAsync<string?>("SELECT detail FROM audit_log WHERE action = 'agent.deleted' AND target = @agentId ORDER BY id DESC LIMIT 1",
            new { agentId = away.AgentId })).ShouldBeNull();

        async Task<(string AgentId, string Token)> AgentWithExpiredStopAsync(string prefix)
        {
            var agentId = ControlPlaneFixture.Unique(prefix);
            var token = (await (await admin.PostAsJsonAsync("/api/v1/agents", new { agentId }, Ct)).ShouldBeJsonAsync(HttpStatusCode.Created))
                .GetProperty("token").GetString()!;
            var sessionId = $"{username}-xterm-{agentId[^6..]}";
            await cp.InsertSessionAsync(sessionId, userId, username, "running", agentId);
            await (await owner.DeleteAsync($"/api/v1/sessions/{sessionId}", Ct)).ShouldBeJsonAsync(HttpStatusCode.Accepted);
            await using (var conn = await cp.Db.OpenAsync(Ct))
                await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE agent_commands SET expires_at = @at WHERE session_id = @sessionId",
                    new { at = DateTimeOffset.UtcNow, sessionId });
            await Hub.HubControlPlane.EventuallyAsync(async () => await cp.ScalarAsync<string>(
                "SELECT state FROM sessions WHERE id = @sessionId", new { sessionId }) == "terminated", TimeSpan.FromSeconds(10), "the expired stop ended the session");
            (await cp.ScalarAsync<string>("SELECT state_reason FROM sessions WHERE id = @sessionId", new { sessionId }))
                .ShouldContain("will stop the session when it reconnects");
            return (agentId, token);
        }
    }
}

public sealed class AgentsApiTests_Sqlite(SqliteControlPlane cp) : AgentsApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class AgentsApiTests_Postgres(PostgresControlPlane cp) : AgentsApiTests(cp), IClassFixture<PostgresControlPlane>;
