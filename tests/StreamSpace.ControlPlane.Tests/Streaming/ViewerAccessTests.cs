using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>
/// A viewer stream outlives its ticket, so it must end when its user's access does: disabled, deleted, tokens revoked
/// (password change), or an admin demoted while viewing somebody else's session. A change that takes nothing away
/// (a new quota) leaves the stream alone.
/// </summary>
public abstract class ViewerAccessTests(StreamingControlPlane cp)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>A viewer of <paramref name="sessionOwnerId"/>'s session connected through the relay to an echo "VNC" server.</summary>
    private async Task<(ClientWebSocket Viewer, StreamingTestServer Echo)> ViewAsync(HttpClient viewerUser, string sessionOwnerId)
    {
        var session = await cp.CreateSessionAsync(sessionOwnerId);
        var echo = StreamingTestServer.Echo();
        cp.AgentSide.Serve(session, echo.ConnectAsync);
        var viewer = await cp.ConnectViewerAsync(viewerUser, session);
        await EchoesAsync(viewer);
        return (viewer, echo);
    }

    private static async Task EchoesAsync(ClientWebSocket viewer)
    {
        var message = "RFB 003.008\n"u8.ToArray();
        using var cts = new CancellationTokenSource(Timeout);
        await viewer.SendAsync(message, WebSocketMessageType.Binary, true, cts.Token);
        (await new StreamingWebSocketReader(viewer).ReadExactAsync(message.Length, cts.Token)).ShouldBe(message);
    }

    private static async Task EndedAsync(ClientWebSocket viewer, StreamingTestServer echo)
    {
        var (status, reason) = await viewer.ReadUntilCloseAsync(Timeout);
        status.ShouldBe(WebSocketCloseStatus.PolicyViolation);
        reason.ShouldBe(ViewerAccess.EndedReason);
        var deadline = DateTime.UtcNow + Timeout;
        while (echo.OpenConnections > 0 && DateTime.UtcNow < deadline) await Task.Delay(20, TestContext.Current.CancellationToken);
        echo.OpenConnections.ShouldBe(0, "the agent's side of the stream is closed too");
    }

    private async Task PatchUserAsync(string userId, object change)
    {
        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{userId}", change, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Disabling_a_user_ends_their_open_viewer_stream_with_a_reason()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (viewer, echo) = await ViewAsync(alice, aliceId);
        await using var _ = echo;
        using var __ = viewer;

        await PatchUserAsync(aliceId, new { disabled = true });

        await EndedAsync(viewer, echo);
    }

    [Fact]
    public async Task A_password_change_ends_the_users_open_viewer_stream()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (viewer, echo) = await ViewAsync(alice, aliceId);
        await using var _ = echo;
        using var __ = viewer;

        await PatchUserAsync(aliceId, new { password = "a-new-password-2" });

        await EndedAsync(viewer, echo);
    }

    [Fact]
    public async Task An_admin_demoted_while_viewing_another_users_session_loses_the_stream()
    {
        var (_, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (carol, carolId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("carol"), role: Roles.Admin);
        var (viewer, echo) = await ViewAsync(carol, aliceId);
        await using var _ = echo;
        using var __ = viewer;

        await PatchUserAsync(carolId, new { role = Roles.User });

        await EndedAsync(viewer, echo);
    }

    [Fact]
    public async Task A_disable_heard_after_the_ticket_was_checked_but_before_the_stream_was_tracked_still_ends_it()
    {
        var (_, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var access = cp.App.Services.GetRequiredService<ViewerAccess>();
        var users = cp.App.Services.GetRequiredService<TokenUserLookup>();
        var before = (await users.FindAsync(aliceId, TestContext.Current.CancellationToken))!;
        // What the ticket's consume saw: the user as allowed.
        var holder = new TicketHolder(aliceId, before.Username, before.Role, before.TokenVersion);

        // The disable commits and its notice is handled here before the stream's grant exists: nothing to end yet.
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
            await conn.ExecuteAsync("UPDATE users SET disabled = @yes WHERE id = @aliceId", new { yes = true, aliceId });
        users.Invalidate(aliceId);

        using var grant = await access.TrackAsync(holder, aliceId, TestContext.Current.CancellationToken);
        grant.Ended.IsCancellationRequested.ShouldBeTrue();
    }

    [Fact]
    public async Task A_change_that_takes_no_access_away_leaves_the_stream_open()
    {
        var (alice, aliceId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("alice"));
        var (viewer, echo) = await ViewAsync(alice, aliceId);
        await using var _ = echo;
        using var __ = viewer;
        var access = cp.App.Services.GetRequiredService<ViewerAccess>();
        access.Count.ShouldBeGreaterThan(0);

        await PatchUserAsync(aliceId, new { maxSessions = 9 });
        // The change's check has run when the next one's has (one user, checked in order on this replica).
        await Task.Delay(500, TestContext.Current.CancellationToken);

        await EchoesAsync(viewer);
        viewer.State.ShouldBe(WebSocketState.Open);
    }
}

public sealed class ViewerAccessTests_Sqlite(StreamingSqliteControlPlane cp) : ViewerAccessTests(cp), IClassFixture<StreamingSqliteControlPlane>;
public sealed class ViewerAccessTests_Postgres(StreamingPostgresControlPlane cp) : ViewerAccessTests(cp), IClassFixture<StreamingPostgresControlPlane>;
