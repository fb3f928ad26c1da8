using System.Net;
using System.Net.Http.Json;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// Concurrent creates are group-committed in shared transactions (SessionCreator): every request must still get
/// exactly its own answer, and a refused request must neither block nor undo the others in its batch.
/// </summary>
public abstract class SessionCreateBatchTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Mixed_concurrent_creates_each_get_their_own_answer()
    {
        await cp.InsertAgentAsync(ControlPlaneFixture.Unique("batch-agent"), maxSessions: 1000);
        var (okClient, okUserId, _) = await cp.QuickUserAsync("batchok", maxSessions: 100);
        var (fullClient, fullUserId, _) = await cp.QuickUserAsync("batchfull", maxSessions: 2);
        var (_, disabledId, disabledName) = await cp.QuickUserAsync("batchoff");
        await cp.ScalarAsync<long>("UPDATE users SET disabled = @yes WHERE id = @disabledId RETURNING 1", new { yes = true, disabledId });
        var admin = await cp.AdminClientAsync();

        Task<HttpResponseMessage> Create(HttpClient client, object body) => client.PostAsJsonAsync("/api/v1/sessions", body, Ct);
        var ok = Enumerable.Range(0, 20).Select(_ => Create(okClient, new { template = "xterm" })).ToList();
        var full = Enumerable.Range(0, 10).Select(_ => Create(fullClient, new { template = "xterm" })).ToList();
        var unknownTemplate = Enumerable.Range(0, 5).Select(_ => Create(okClient, new { template = "no-such-template" })).ToList();
        var forDisabled = Enumerable.Range(0, 5).Select(_ => Create(admin, new { template = "xterm", user = disabledName })).ToList();
        var forNobody = Create(admin, new { template = "xterm", user = ControlPlaneFixture.Unique("ghost") });
        await Task.WhenAll(ok.Concat(full).Concat(unknownTemplate).Concat(forDisabled).Append(forNobody));

        var createdIds = new List<string>();
        foreach (var r in ok)
            createdIds.Add((await (await r).ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("id").GetString()!);
        createdIds.Distinct().Count().ShouldBe(20);
        (await Task.WhenAll(full)).Count(r => r.StatusCode == HttpStatusCode.Created).ShouldBe(2);
        foreach (var r in (await Task.WhenAll(full)).Where(r => r.StatusCode != HttpStatusCode.Created))
            (await r.ShouldBeErrorAsync(HttpStatusCode.Forbidden)).GetProperty("error").GetString().ShouldBe("Quota exceeded");
        foreach (var r in unknownTemplate)
            (await (await r).ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("message").GetString()!.ShouldContain("no template named 'no-such-template'");
        foreach (var r in forDisabled)
            (await (await r).ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("message").GetString()!.ShouldContain("is disabled");
        (await (await forNobody).ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("message").GetString()!.ShouldContain("there is no user named");

        // What was answered is what was written: sessions, their start commands and audit entries, nothing more.
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @okUserId", new { okUserId })).ShouldBe(20);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @fullUserId", new { fullUserId })).ShouldBe(2);
        (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM sessions WHERE user_id = @disabledId", new { disabledId })).ShouldBe(0);
        (await cp.ScalarAsync<long>(
            "SELECT COUNT(*) FROM agent_commands c JOIN sessions s ON s.id = c.session_id WHERE s.user_id IN (@okUserId, @fullUserId) AND c.type = 'session.start'",
            new { okUserId, fullUserId })).ShouldBe(22);
        foreach (var id in createdIds)
            (await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'session.created' AND target = @id", new { id })).ShouldBe(1);
    }

    [Fact]
    public async Task A_new_session_id_that_is_already_taken_is_recognised_so_the_batch_retries_with_new_ids()
    {
        // Ids are {user}-{template}-{6 letters}: a user with thousands of sessions repeats one sooner or later, and the
        // batch then draws new ids instead of failing every create in it. This is the database's own error for it.
        var (_, userId, username) = await cp.QuickUserAsync("collide");
        var id = $"{username}-xterm-aaaaaa";
        const string insert = """
            INSERT INTO sessions (id, user_id, username, template, state, cpu, memory, persistent_home, created_at, updated_at)
            VALUES (@id, @userId, @username, 'xterm', 'terminated', '1', '1Gi', @no, @now, @now) RETURNING 1
            """;
        var args = new { id, userId, username, no = false, now = DateTimeOffset.UtcNow };
        await cp.ScalarAsync<long>(insert, args);
        var repeated = await Should.ThrowAsync<Exception>(() => cp.ScalarAsync<long>(insert, args));
        Sessions.SessionCreator.IsSessionIdCollision(repeated).ShouldBeTrue(repeated.Message);

        // Any other failure is not mistaken for one (here: a user name that is taken).
        var (_, secondId, _) = await cp.QuickUserAsync("collide2");
        var other = await Should.ThrowAsync<Exception>(() => cp.ScalarAsync<long>(
            "UPDATE users SET username = @username WHERE id = @secondId RETURNING 1", new { username, secondId }));
        Sessions.SessionCreator.IsSessionIdCollision(other).ShouldBeFalse(other.Message);
    }
}

public sealed class SessionCreateBatchTests_Sqlite(SqliteControlPlane cp) : SessionCreateBatchTests(cp), IClassFixture<SqliteControlPlane>;

public sealed class SessionCreateBatchTests_Postgres(PostgresControlPlane cp) : SessionCreateBatchTests(cp), IClassFixture<PostgresControlPlane>;
