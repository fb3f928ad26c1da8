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

    /// <summary>Each admin's PATCH of the other, released at the same moment: a disable or a demotion.</summary>
    [Theory]
    [InlineData("disable")]
    [InlineData("demote")]
    public async Task Two_admins_disabling_or_demoting_each_other_at_once_leave_one_enabled_admin(string change)
    {
        var ct = TestContext.Current.CancellationToken;
        object body = change == "disable" ? new { disabled = true } : new { role = "user" };
        for (var round = 0; round < Rounds; round++)
        {
            var (a, aId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique(change + "a"), role: Roles.Admin);
            var (b, bId, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique(change + "b"), role: Roles.Admin);
            // The two of them are the only enabled admins.
            await using (var conn = await cp.Db.OpenAsync(ct))
                await conn.ExecuteAsync("UPDATE users SET disabled = @yes WHERE role = 'admin' AND id <> @aId AND id <> @bId",
                    new { yes = true, aId, bId });

            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            async Task<HttpResponseMessage> ChangeAsync(HttpClient caller, string target)
            {
                await gate.Task;
                return await caller.PatchAsJsonAsync($"/api/v1/users/{target}", body, ct);
            }
            var aChangesB = ChangeAsync(a, bId);
            var bChangesA = ChangeAsync(b, aId);
            gate.SetResult();
            var responses = await Task.WhenAll(aChangesB, bChangesA);

            responses.Count(r => r.StatusCode == HttpStatusCode.OK).ShouldBe(1, $"round {round}: {responses[0].StatusCode} / {responses[1].StatusCode}");
            // The loser learns why: its own admin rights went first.
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
