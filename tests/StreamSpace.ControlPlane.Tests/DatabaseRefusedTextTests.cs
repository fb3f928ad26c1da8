using System.Net;
using Dapper;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Logging;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The net behind input validation: text PostgreSQL refuses (U+0000: 22021; a character its conversion lacks: 22P05;
/// longer than its varchar(n) column: 22001) that still reaches a statement is answered 400 by the API's error handling,
/// not 500, and logged as a warning. PostgreSQL only: SQLite stores any text. The endpoints here pass their input to
/// PostgreSQL unchecked, as a place validation missed would.
/// </summary>
public sealed class DatabaseRefusedTextTests_Postgres : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private TestDatabase _database = null!;
    private Db _db = null!;
    private WebApplication _app = null!;
    private HttpClient _client = null!;
    private readonly CapturedLog _log = new();

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        _db = new Db(_database.Target);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_log);
        builder.Services.AddSingleton(_db);
        _app = builder.Build();
        _app.UseApiErrorHandling();
        _app.MapGet("/latin1-length", async (string text, Db db, CancellationToken ct) =>
        {
            await using var conn = await db.OpenAsync(ct);
            return await conn.ExecuteScalarAsync<int>(new CommandDefinition("SELECT length(convert_to(@text, 'LATIN1'))", new { text }, cancellationToken: ct));
        });
        _app.MapPost("/short-text", async (string text, Db db, CancellationToken ct) =>
        {
            await using var conn = await db.OpenAsync(ct);
            return await conn.ExecuteAsync(new CommandDefinition("INSERT INTO short_text (v) VALUES (@text)", new { text }, cancellationToken: ct));
        });
        await using (var conn = await _db.OpenAsync(Ct))
            await conn.ExecuteAsync(new CommandDefinition("CREATE TABLE short_text (v varchar(5))", cancellationToken: Ct));
        await _app.StartAsync(Ct);
        _client = new HttpClient { BaseAddress = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        await _db.DisposeAsync();
        await _database.DisposeAsync();
    }

    [Theory]
    [InlineData("a%00b")] // 22021 while binding the parameter
    [InlineData("%E2%82%AC")] // 22P05: the euro sign has no LATIN1 byte
    public async Task Text_the_database_refuses_is_a_400_with_a_plain_message(string text)
    {
        var error = await (await _client.GetAsync($"/latin1-length?text={text}", Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Invalid request");
        error.GetProperty("message").GetString().ShouldBe("The request contains text the database cannot store, such as the character U+0000 (NUL).");
    }

    [Fact]
    public async Task Text_longer_than_its_column_is_a_400_with_a_plain_message_and_a_warning()
    {
        var error = await (await _client.PostAsync("/short-text?text=abcdef", null, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("error").GetString().ShouldBe("Invalid request");
        error.GetProperty("message").GetString().ShouldBe("The request contains text longer than the database stores for its field.");
        _log.Entries.Where(e => e.Level == LogLevel.Warning && e.Category == "StreamSpace.Errors")
            .Select(e => (e.Exception as Npgsql.PostgresException)?.SqlState).ShouldContain("22001");
        _log.Entries.Where(e => e.Level >= LogLevel.Error).ShouldBeEmpty();
    }

    [Fact]
    public async Task Text_it_takes_is_answered_as_usual()
    {
        (await (await _client.GetAsync("/latin1-length?text=abc", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetInt32().ShouldBe(3);
        (await (await _client.PostAsync("/short-text?text=abcde", null, Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetInt32().ShouldBe(1);
    }
}
