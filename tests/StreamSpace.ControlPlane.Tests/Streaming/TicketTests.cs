using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>Viewer tickets: issuing (owner/admin, running only) and every way of misusing one at the viewer endpoint.</summary>
public abstract class TicketTests(StreamingControlPlane cp)
{
    private static string VncPath(string sessionId, string ticket) => $"/api/v1/sessions/{sessionId}/vnc?ticket={ticket}";

    /// <summary>A user's session that the agent side serves with an echo endpoint (disposed with the test).</summary>
    private sealed record ServedSession(HttpClient Alice, string AliceId, string Session, StreamingTestServer Echo) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Echo.DisposeAsync();
    }

    private async Task<ServedSession> ServedSessionAsync(string? username = null)
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(username ?? ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        return new ServedSession(alice, aliceId, session, echo);
    }

    [Fact]
    public async Task Owner_gets_a_one_time_ticket_stored_only_as_its_hash()
    {
        var (alice, aliceId, aliceToken) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);

        using var response = await alice.PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
        var json = await response.ShouldBeJsonAsync(HttpStatusCode.OK);
        var ticket = json.GetProperty("ticket").GetString()!;
        ticket.Length.ShouldBe(43); // 32 bytes, base64url without padding
        ticket.ShouldMatch("^[A-Za-z0-9_-]{43}$");
        json.GetProperty("url").GetString().ShouldBe($"/api/v1/sessions/{session}/vnc?ticket={ticket}");
        json.GetProperty("url").GetString()!.ShouldNotContain(aliceToken);
        var expiresAt = json.GetProperty("expiresAt").GetDateTimeOffset();
        expiresAt.ShouldBeGreaterThan(cp.Clock.GetUtcNow());
        expiresAt.ShouldBeLessThanOrEqualTo(cp.Clock.GetUtcNow().AddSeconds(60));

        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        var row = await conn.QuerySingleAsync<(string Hash, string SessionId, string UserId)>(
            "SELECT ticket_hash, session_id, user_id FROM viewer_tickets WHERE ticket_hash = @hash",
            new { hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(ticket))) });
        row.SessionId.ShouldBe(session);
        row.UserId.ShouldBe(aliceId);
        (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM viewer_tickets WHERE ticket_hash = @ticket OR id = @ticket", new { ticket })).ShouldBe(0);
    }

    [Fact]
    public async Task Another_users_session_is_404_and_an_admin_may_view_any()
    {
        var (_, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (bob, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("bob"));
        var session = await cp.CreateSessionAsync(aliceId);

        using var asBob = await bob.PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
        await asBob.ShouldBeErrorAsync(HttpStatusCode.NotFound);
        using var missing = await bob.PostAsync("/api/v1/sessions/no-such-session/viewer-ticket", null);
        await missing.ShouldBeErrorAsync(HttpStatusCode.NotFound);
        using var anonymous = await cp.Client().PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
        await anonymous.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);

        var admin = await cp.AdminClientAsync();
        await admin.TicketAsync(session);
    }

    [Fact]
    public async Task A_session_that_is_not_running_gets_409_naming_its_state()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        foreach (var state in new[] { "pending", "starting", "hibernated", "failed", "terminated" })
        {
            var session = await cp.CreateSessionAsync(aliceId, state);
            using var response = await alice.PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
            var error = await response.ShouldBeErrorAsync(HttpStatusCode.Conflict);
            error.GetProperty("message").GetString()!.ShouldContain(state);
        }
    }

    [Fact]
    public async Task A_session_whose_agent_is_offline_or_gone_gets_409_naming_the_agent_and_no_ticket()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var agentId = ControlPlaneFixture.Unique("agent-");
        var session = await cp.CreateSessionAsync(aliceId, agentId: agentId);
        await cp.InsertAgentAsync(agentId, AgentStatus.Offline);

        using var offline = await alice.PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
        var error = await offline.ShouldBeErrorAsync(HttpStatusCode.Conflict);
        error.GetProperty("error").GetString().ShouldBe("Agent offline");
        error.GetProperty("message").GetString()!.ShouldContain($"'{agentId}'");
        error.GetProperty("message").GetString()!.ShouldContain("offline");

        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await conn.ExecuteAsync("DELETE FROM agents WHERE agent_id = @agentId", new { agentId });
        using var gone = await alice.PostAsync($"/api/v1/sessions/{session}/viewer-ticket", null);
        (await gone.ShouldBeErrorAsync(HttpStatusCode.Conflict)).GetProperty("message").GetString()!.ShouldContain($"'{agentId}'");
        var noAgent = await cp.CreateSessionAsync(aliceId, agentId: null);
        using var none = await alice.PostAsync($"/api/v1/sessions/{noAgent}/viewer-ticket", null);
        (await none.ShouldBeErrorAsync(HttpStatusCode.Conflict)).GetProperty("error").GetString().ShouldBe("Agent offline");

        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM viewer_tickets WHERE session_id = @session", new { session })).ShouldBe(0);
        // Back online: a ticket again.
        await cp.InsertAgentAsync(agentId);
        await alice.TicketAsync(session);
    }

    [Fact]
    public async Task A_reused_ticket_is_refused()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var (ticket, _) = await alice.TicketAsync(session);
        await cp.ClearSessionAgentAsync(session); // consumes, then 409 (no agent): nothing to relay

        using var first = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        await first.ShouldBeErrorAsync(HttpStatusCode.Conflict);
        using var second = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        (await second.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("Ticket already used");
    }

    [Fact]
    public async Task Concurrent_presentations_of_one_ticket_consume_it_exactly_once()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var (ticket, _) = await alice.TicketAsync(session);
        await cp.ClearSessionAgentAsync(session); // past the ticket: 409, so nothing is relayed

        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => cp.UpgradeRequestAsync(VncPath(session, ticket))));
        responses.Count(r => r.StatusCode == HttpStatusCode.Conflict).ShouldBe(1);
        responses.Count(r => r.StatusCode == HttpStatusCode.Unauthorized).ShouldBe(7);
        foreach (var r in responses) r.Dispose();
    }

    [Fact]
    public async Task A_plain_get_with_a_ticket_is_told_to_use_a_websocket_and_leaves_the_ticket_usable()
    {
        // A link opened in a browser tab, or curl: not a viewer, so the ticket is not spent on it.
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, _) = served;
        var (ticket, url) = await alice.TicketAsync(session);

        using var plain = await cp.Client().GetAsync(VncPath(session, ticket), TestContext.Current.CancellationToken);
        var error = await plain.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("WebSocket required");
        error.GetProperty("message").GetString().ShouldBe("This endpoint speaks WebSocket only (binary RFB frames).");

        using var viewer = await cp.ConnectViewerAsync(url);
        viewer.SubProtocol.ShouldBe("binary");
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
    }

    [Fact]
    public async Task A_ticket_used_by_a_connected_viewer_cannot_connect_a_second_one()
    {
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, _) = served;
        var (ticket, url) = await alice.TicketAsync(session);

        using var viewer = await cp.ConnectViewerAsync(url);
        viewer.SubProtocol.ShouldBe("binary");
        using var again = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        await again.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
    }

    [Fact]
    public async Task A_ticket_for_another_session_is_refused_and_burnt()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (_, bobId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("bob"));
        var aliceSession = await cp.CreateSessionAsync(aliceId);
        var aliceOther = await cp.CreateSessionAsync(aliceId);
        var bobSession = await cp.CreateSessionAsync(bobId);

        var (ticket, _) = await alice.TicketAsync(aliceSession);
        using var otherOwn = await cp.UpgradeRequestAsync(VncPath(aliceOther, ticket));
        await otherOwn.ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        // A ticket shown for the wrong session counts as leaked: it no longer works for its own session either.
        using var ownAfter = await cp.UpgradeRequestAsync(VncPath(aliceSession, ticket));
        await ownAfter.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);

        var (ticket2, _) = await alice.TicketAsync(aliceSession);
        using var otherUsers = await cp.UpgradeRequestAsync(VncPath(bobSession, ticket2));
        await otherUsers.ShouldBeErrorAsync(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Missing_ticket_or_a_JWT_instead_of_one_is_refused()
    {
        var (_, aliceId, aliceToken) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);

        using var missing = await cp.UpgradeRequestAsync($"/api/v1/sessions/{session}/vnc");
        await missing.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        using var jwtAsTicket = await cp.UpgradeRequestAsync(VncPath(session, aliceToken));
        (await jwtAsTicket.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("API token refused");
        using var accessToken = await cp.UpgradeRequestAsync($"/api/v1/sessions/{session}/vnc?access_token={aliceToken}");
        (await accessToken.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("API token refused");
        using var bearerOnly = await cp.UpgradeRequestAsync($"/api/v1/sessions/{session}/vnc", bearer: aliceToken);
        await bearerOnly.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        using var garbage = await cp.UpgradeRequestAsync(VncPath(session, "not-a-ticket"));
        await garbage.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task A_ticket_for_a_session_that_stopped_running_is_409()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var (ticket, _) = await alice.TicketAsync(session);
        await cp.SetSessionStateAsync(session, "hibernated");

        using var response = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        (await response.ShouldBeErrorAsync(HttpStatusCode.Conflict)).GetProperty("message").GetString()!.ShouldContain("hibernated");
    }

    [Fact]
    public async Task A_ticket_issued_before_a_password_change_is_refused_and_burnt()
    {
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, echo) = served;
        var (ticket, _) = await alice.TicketAsync(session);

        await PatchUserAsync(aliceId, new { password = "a-new-password-2" });

        using var response = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        var error = await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
        error.GetProperty("error").GetString().ShouldBe("Ticket revoked");
        error.GetProperty("message").GetString()!.ShouldContain("password");
        await ShouldBeBurntAsync(session, ticket);
        echo.ServedConnections.ShouldBe(0, "no stream was opened");
    }

    /// <summary>
    /// A ticket request whose token was checked just before a password change (the step that revokes a stolen token) and
    /// that inserts just after it: the ticket took the user's new version and passed every later check (a probe with 16
    /// requesters racing one change got up to 16 such tickets). It is issued only at the version the token carried.
    /// </summary>
    [Fact]
    public async Task A_ticket_is_issued_only_at_the_token_version_its_request_was_authenticated_with()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var served = await ServedSessionAsync();
        var (_, aliceId, session, _) = served;
        var store = cp.App.Services.GetRequiredService<StreamSpace.ControlPlane.Streaming.ViewerTicketStore>();
        async Task<int> VersionAsync()
        {
            await using var conn = await cp.Db.OpenAsync(ct);
            return await Dapper.SqlMapper.ExecuteScalarAsync<int>(conn, "SELECT token_version FROM users WHERE id = @aliceId", new { aliceId });
        }
        var checkedAt = await VersionAsync();

        (await store.IssueAsync(session, aliceId, checkedAt, ct)).ShouldNotBeNull();
        await PatchUserAsync(aliceId, new { password = "a-new-password-3" });
        (await VersionAsync()).ShouldBe(checkedAt + 1);

        (await store.IssueAsync(session, aliceId, checkedAt, ct)).ShouldBeNull("the request's token was revoked after it was checked");
        (await store.IssueAsync(session, aliceId, checkedAt + 1, ct)).ShouldNotBeNull("a token of the new version gets one");
        await using (var conn = await cp.Db.OpenAsync(ct))
            (await Dapper.SqlMapper.QueryAsync<int>(conn, "SELECT token_version FROM viewer_tickets WHERE session_id = @session ORDER BY created_at", new { session }))
                .ShouldBe([checkedAt, checkedAt + 1]);
        await PatchUserAsync(aliceId, new { disabled = true });
        (await store.IssueAsync(session, aliceId, checkedAt + 2, ct)).ShouldBeNull("nor is one issued to a disabled user");
    }

    [Fact]
    public async Task A_ticket_issued_before_tickets_recorded_a_token_version_still_opens_the_viewer()
    {
        // As M0011 leaves a ticket issued before the upgrade (or a replica not upgraded yet issues one): version 0.
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, _) = served;
        var (_, url) = await alice.TicketAsync(session);
        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
            await Dapper.SqlMapper.ExecuteAsync(conn, "UPDATE viewer_tickets SET token_version = 0 WHERE session_id = @session", new { session });

        using var viewer = await cp.ConnectViewerAsync(url);
        viewer.State.ShouldBe(WebSocketState.Open);
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
    }

    [Fact]
    public async Task A_ticket_of_a_user_disabled_after_it_was_issued_is_refused_and_burnt()
    {
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, echo) = served;
        var (ticket, _) = await alice.TicketAsync(session);

        await PatchUserAsync(aliceId, new { disabled = true });

        using var response = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        (await response.ShouldBeErrorAsync(HttpStatusCode.Forbidden)).GetProperty("message").GetString()!.ShouldContain("disabled");
        await ShouldBeBurntAsync(session, ticket);
        echo.ServedConnections.ShouldBe(0, "no stream was opened");
    }

    [Fact]
    public async Task An_admin_viewing_another_users_session_is_audited_the_owner_viewing_their_own_is_not()
    {
        var aliceName = ControlPlaneFixture.Unique("alice");
        await using var served = await ServedSessionAsync(aliceName);
        var (alice, aliceId, session, _) = served;
        var admin = await cp.AdminClientAsync();

        using (var own = await cp.ConnectViewerAsync(alice, session))
            await own.CloseAsync(WebSocketCloseStatus.NormalClosure, "", TestContext.Current.CancellationToken);
        (await ViewedAsync(admin, session)).ShouldBeEmpty();

        using (var watching = await cp.ConnectViewerAsync(admin, session))
            await watching.CloseAsync(WebSocketCloseStatus.NormalClosure, "", TestContext.Current.CancellationToken);
        var entry = (await ViewedAsync(admin, session)).ShouldHaveSingleItem();
        entry.GetProperty("actor").GetString().ShouldBe("admin");
        entry.GetProperty("detail").GetString().ShouldBe($"owner={aliceName}");
        entry.GetProperty("clientIp").GetString().ShouldBe("127.0.0.1");
        // Listed under the owner too: the entry is about her session.
        using var byOwner = await admin.GetAsync($"/api/v1/audit?user={aliceName}&action=session.viewed", TestContext.Current.CancellationToken);
        (await byOwner.ShouldBeJsonAsync(HttpStatusCode.OK)).EnumerateArray().ShouldHaveSingleItem().GetProperty("target").GetString().ShouldBe(session);
    }

    private static async Task<List<JsonElement>> ViewedAsync(HttpClient admin, string session)
    {
        using var response = await admin.GetAsync("/api/v1/audit?action=session.viewed&limit=1000", TestContext.Current.CancellationToken);
        return (await response.ShouldBeJsonAsync(HttpStatusCode.OK)).EnumerateArray().Where(e => e.GetProperty("target").GetString() == session).ToList();
    }

    private async Task PatchUserAsync(string userId, object change)
    {
        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{userId}", change, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    private async Task ShouldBeBurntAsync(string session, string ticket)
    {
        await using (var conn = await cp.Db.OpenAsync(CancellationToken.None))
        {
            (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM viewer_tickets WHERE ticket_hash = @hash AND used_at IS NOT NULL",
                new { hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(ticket))) })).ShouldBe(1);
        }
        using var again = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        (await again.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("Ticket already used");
    }

    [Fact]
    public async Task A_foreign_origin_is_403_before_the_ticket_is_touched()
    {
        await using var served = await ServedSessionAsync();
        var (alice, aliceId, session, _) = served;
        var (ticket, url) = await alice.TicketAsync(session);

        using var foreign = await cp.UpgradeRequestAsync(VncPath(session, ticket), origin: "http://evil.example");
        (await foreign.ShouldBeErrorAsync(HttpStatusCode.Forbidden)).GetProperty("error").GetString().ShouldBe("Origin not allowed");
        using var otherPort = await cp.UpgradeRequestAsync(VncPath(session, ticket), origin: $"http://127.0.0.1:{cp.BaseAddress.Port + 1}");
        await otherPort.ShouldBeErrorAsync(HttpStatusCode.Forbidden);

        // The same ticket still works from the control plane's own origin.
        var ownOrigin = $"{cp.BaseAddress.Scheme}://{cp.BaseAddress.Authority}";
        using var viewer = await cp.ConnectViewerAsync(url, ownOrigin);
        viewer.State.ShouldBe(WebSocketState.Open);
        await viewer.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
    }

    [Fact]
    public async Task A_plain_GET_without_upgrade_is_400_and_keeps_the_ticket()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var (ticket, _) = await alice.TicketAsync(session);
        using var response = await cp.Client().GetAsync(VncPath(session, ticket));
        await response.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await using var conn = await cp.Db.OpenAsync(CancellationToken.None);
        (await conn.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM viewer_tickets WHERE session_id = @session AND used_at IS NULL", new { session })).ShouldBe(1);
    }
}

public sealed class TicketTests_Sqlite(StreamingSqliteControlPlane cp) : TicketTests(cp), IClassFixture<StreamingSqliteControlPlane>;
public sealed class TicketTests_Postgres(StreamingPostgresControlPlane cp) : TicketTests(cp), IClassFixture<StreamingPostgresControlPlane>;

/// <summary>
/// Expiry moves the fixture's fake clock past the ticket lifetime; it has a fixture of its own because
/// API tokens issued after that would be "not yet valid" for the real-time JWT validation of other tests.
/// </summary>
public abstract class TicketExpiryTests(StreamingControlPlane cp)
{
    private static string VncPath(string sessionId, string ticket) => $"/api/v1/sessions/{sessionId}/vnc?ticket={ticket}";

    [Fact]
    public async Task An_expired_ticket_is_refused()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var session = await cp.CreateSessionAsync(aliceId);
        var (ticket, _) = await alice.TicketAsync(session);
        cp.Clock.Advance(TimeSpan.FromSeconds(61));

        using var response = await cp.UpgradeRequestAsync(VncPath(session, ticket));
        (await response.ShouldBeErrorAsync(HttpStatusCode.Unauthorized)).GetProperty("error").GetString().ShouldBe("Ticket expired");
    }
}

public sealed class TicketExpiryTests_Sqlite(StreamingSqliteControlPlane cp) : TicketExpiryTests(cp), IClassFixture<StreamingSqliteControlPlane>;
public sealed class TicketExpiryTests_Postgres(StreamingPostgresControlPlane cp) : TicketExpiryTests(cp), IClassFixture<StreamingPostgresControlPlane>;
