using System.Net;
using System.Net.Http.Json;
using Dapper;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Hub;

namespace StreamSpace.ControlPlane.Tests.Infrastructure;

/// <summary>
/// One bad create among 21 good ones that would share its group-committed batch: the creates' write lock is held until
/// all of them are queued (on SQLite the database's write lock, on PostgreSQL the owner's row, which a create batch locks
/// first). Every good create must get its 201 whatever the bad one does to the batch.
/// </summary>
public static class SharedCreateBatch
{
    /// <returns>The bad create's answer, for the caller to check.</returns>
    public static async Task<HttpResponseMessage> OneBadAmongGoodCreatesAsync(ControlPlaneFixture cp, string label, string badTemplate)
    {
        var ct = TestContext.Current.CancellationToken;
        await cp.InsertAgentAsync(ControlPlaneFixture.Unique(label + "-agent"), maxSessions: 1000);
        var (client, userId, _) = await cp.QuickUserAsync(label, maxSessions: 100);
        var creator = cp.App.Services.GetRequiredService<SessionCreator>();
        Task<HttpResponseMessage> Create(string template) => client.PostAsJsonAsync("/api/v1/sessions", new { template }, ct);
        Task Until(Func<bool> condition, string what) => HubControlPlane.EventuallyAsync(() => Task.FromResult(condition()), TimeSpan.FromSeconds(15), what);

        Task<HttpResponseMessage> first, bad;
        List<Task<HttpResponseMessage>> others;
        var (conn, tx) = await cp.Db.BeginWriteAsync(ct);
        await using (conn)
        await using (tx)
        {
            if (cp.Db.IsPostgres)
                await conn.ExecuteAsync(new CommandDefinition("SELECT id FROM users WHERE id = @userId FOR UPDATE", new { userId }, tx, cancellationToken: ct));
            first = Create("xterm");
            await Until(() => creator.Pending >= 1, "the first create is queued");
            bad = Create(badTemplate);
            await Until(() => bad.IsCompleted || creator.Pending >= 2, "the bad create is answered or queued");
            var queued = creator.Pending;
            others = Enumerable.Range(0, 20).Select(_ => Create("xterm")).ToList();
            await Until(() => creator.Pending >= queued + others.Count, "the other creates are queued");
            await tx.RollbackAsync(ct);
        }

        foreach (var response in others.Append(first))
            await (await response).ShouldBeJsonAsync(HttpStatusCode.Created);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @userId", new { userId })).ShouldBe(21);
        return await bad;
    }
}
