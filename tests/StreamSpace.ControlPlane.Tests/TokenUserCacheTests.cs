using System.Net;
using System.Net.Http.Json;
using Dapper;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The user row behind an API token (<see cref="TokenUserLookup"/>): kept between requests on PostgreSQL while the
/// replica hears user changes, and still ended at once by every kind of change.
/// </summary>
public sealed class TokenUserCacheTests_Postgres(PostgresControlPlane cp) : IClassFixture<PostgresControlPlane>
{
    private TokenUserLookup Lookup => cp.App.Services.GetRequiredService<TokenUserLookup>();

    [Fact]
    public async Task Requests_with_one_token_read_the_user_once_while_changes_are_heard()
    {
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("kept"));
        await KeptAsync(client);
        var reads = Lookup.DatabaseReads;
        for (var i = 0; i < 20; i++)
        {
            var me = await (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
            me.GetProperty("id").GetString().ShouldBe(id);
        }
        Lookup.DatabaseReads.ShouldBe(reads);
    }

    [Fact]
    public async Task Disabling_through_the_api_ends_a_kept_token_with_the_very_next_request()
    {
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("apioff"));
        await KeptAsync(client);
        var admin = await cp.AdminClientAsync();
        (await admin.PatchAsJsonAsync($"/api/v1/users/{id}", new { disabled = true }, TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task A_user_changed_with_plain_sql_loses_a_kept_token_within_moments_not_after_the_keep_time()
    {
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("sqloff"));
        await KeptAsync(client);
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
            await conn.ExecuteAsync("UPDATE users SET token_version = token_version + 1 WHERE id = @id", new { id });
        var took = await HubControlPlane.EventuallyAsync(
            async () => (await client.GetAsync("/api/v1/users/me")).StatusCode == HttpStatusCode.Unauthorized,
            TimeSpan.FromSeconds(3), "the bumped token version ends the token");
        took.ShouldBeLessThan(TokenUserLookup.MaxAge);
    }

    [Fact]
    public async Task A_change_made_while_the_listener_was_cut_off_is_not_missed()
    {
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("cutoff"));
        await KeptAsync(client);
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
        {
            (await conn.ExecuteScalarAsync<long>(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"))
                .ShouldBe(1, "the replica's listener");
            // Nobody hears this notification.
            await conn.ExecuteAsync("UPDATE users SET disabled = TRUE WHERE id = @id", new { id });
        }
        await HubControlPlane.EventuallyAsync(
            async () => (await client.GetAsync("/api/v1/users/me")).StatusCode == HttpStatusCode.Unauthorized,
            TimeSpan.FromSeconds(4), "the disabled user's token ends although its notification went to nobody");
    }

    private Task KeptAsync(HttpClient client) => KeptUser.UntilKeptAsync(client, Lookup);
}

public static class KeptUser
{
    /// <summary>Until the client's user row is kept between requests: the listener connects in the background at start-up.</summary>
    public static async Task UntilKeptAsync(HttpClient client, TokenUserLookup lookup) =>
        await HubControlPlane.EventuallyAsync(async () =>
        {
            (await client.GetAsync("/api/v1/users/me")).StatusCode.ShouldBe(HttpStatusCode.OK);
            var before = lookup.DatabaseReads;
            (await client.GetAsync("/api/v1/users/me")).StatusCode.ShouldBe(HttpStatusCode.OK);
            return lookup.DatabaseReads == before;
        }, TimeSpan.FromSeconds(10), "the user's row is kept between requests");
}

public sealed class TokenUserCacheTests_Sqlite(SqliteControlPlane cp) : IClassFixture<SqliteControlPlane>
{
    [Fact]
    public async Task Every_request_reads_its_user_and_a_plain_sql_change_counts_at_once()
    {
        var lookup = cp.App.Services.GetRequiredService<TokenUserLookup>();
        var (client, id, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("lite"));
        var reads = lookup.DatabaseReads;
        for (var i = 0; i < 5; i++)
            (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        lookup.DatabaseReads.ShouldBe(reads + 5);
        await using (var conn = await cp.Db.OpenAsync(TestContext.Current.CancellationToken))
            await conn.ExecuteAsync("UPDATE users SET disabled = 1 WHERE id = @id", new { id });
        (await client.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
    }
}
