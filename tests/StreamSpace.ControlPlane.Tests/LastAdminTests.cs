using System.Net;
using System.Net.Http.Json;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Admins changing each other at the same moment never leave the platform without an enabled admin. A class (and so a
/// control plane) of its own: it disables every other admin, the fixture's <c>admin</c> too.
/// </summary>
public abstract class LastAdminTests(ControlPlaneFixture cp)
{
    private const int Rounds = 15;

    [Fact]
    public async Task Two_admins_disabling_each_other_at_once_leave_one_enabled_admin()
    {
        var ct = TestContext.Current.CancellationToken;
        for (var round = 0; round < Rounds; round++)
        {
            var (a, aId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("racea"), role: Roles.Admin);
            var (b, bId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("raceb"), role: Roles.Admin);
            // The two of them are the only enabled admins.
            await using (var conn = await cp.Db.OpenAsync(ct))
                await conn.ExecuteAsync("UPDATE users SET disabled = @yes WHERE role = 'admin' AND id <> @aId AND id <> @bId",
                    new { yes = true, aId, bId });

            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            async Task<HttpResponseMessage> DisableAsync(HttpClient caller, string target)
            {
                await gate.Task;
                return await caller.PatchAsJsonAsync($"/api/v1/users/{target}", new { disabled = true }, ct);
            }
            var aDisablesB = DisableAsync(a, bId);
            var bDisablesA = DisableAsync(b, aId);
            gate.SetResult();
            var responses = await Task.WhenAll(aDisablesB, bDisablesA);

            var succeeded = responses.Count(r => r.StatusCode == HttpStatusCode.OK);
            succeeded.ShouldBe(1, $"round {round}: {responses[0].StatusCode} / {responses[1].StatusCode}");
            // The loser learns why: its own account was disabled first.
            await responses.Single(r => r.StatusCode != HttpStatusCode.OK).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
            await using (var conn = await cp.Db.OpenAsync(ct))
            {
                var enabledAdmins = await conn.ExecuteScalarAsync<long>(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = @no", new { no = false });
                enabledAdmins.ShouldBe(1, $"round {round}");
            }
        }
    }

    [Fact]
    public async Task Two_admins_demoting_each_other_at_once_leave_one_enabled_admin()
    {
        var ct = TestContext.Current.CancellationToken;
        for (var round = 0; round < Rounds; round++)
        {
            var (a, aId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("demotea"), role: Roles.Admin);
            var (b, bId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("demoteb"), role: Roles.Admin);
            await using (var conn = await cp.Db.OpenAsync(ct))
                await conn.ExecuteAsync("UPDATE users SET disabled = @yes WHERE role = 'admin' AND id <> @aId AND id <> @bId",
                    new { yes = true, aId, bId });

            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            async Task<HttpResponseMessage> DemoteAsync(HttpClient caller, string target)
            {
                await gate.Task;
                return await caller.PatchAsJsonAsync($"/api/v1/users/{target}", new { role = "user" }, ct);
            }
            var aDemotesB = DemoteAsync(a, bId);
            var bDemotesA = DemoteAsync(b, aId);
            gate.SetResult();
            var responses = await Task.WhenAll(aDemotesB, bDemotesA);

            responses.Count(r => r.StatusCode == HttpStatusCode.OK).ShouldBe(1, $"round {round}: {responses[0].StatusCode} / {responses[1].StatusCode}");
            await responses.Single(r => r.StatusCode != HttpStatusCode.OK).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
            await using (var conn = await cp.Db.OpenAsync(ct))
            {
                var enabledAdmins = await conn.ExecuteScalarAsync<long>(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = @no", new { no = false });
                enabledAdmins.ShouldBe(1, $"round {round}");
            }
        }
    }
}

public sealed class LastAdminTests_Sqlite(SqliteControlPlane cp) : LastAdminTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class LastAdminTests_Postgres(PostgresControlPlane cp) : LastAdminTests(cp), IClassFixture<PostgresControlPlane>;
