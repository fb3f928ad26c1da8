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
/// The net behind input validation: text PostgreSQL refuses (U+0000: 22021; a character its conversion lacks: 22P05)
/// that still reaches a statement is answered 400 by the API's error handling, not 500. PostgreSQL only: SQLite stores
/// any text. The endpoint here passes its input to PostgreSQL unchecked, as a place validation missed would.
/// </summary>
public sealed class DatabaseRefusedTextTests_Postgres : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private TestDatabase _database = null!;
    private Db _db = null!;
    private WebApplication _app = null!;
    private HttpClient _client = null!;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        _db = new Db(_database.Target);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(_db);
        _app = builder.Build();
        _app.UseApiErrorHandling();
        _app.MapGet("/latin1-length", async (string text, Db db, CancellationToken ct) =>
        {
            await using var conn = await db.OpenAsync(ct);
            return await conn.ExecuteScalarAsync<int>(new CommandDefinition("SELECT length(convert_to(@text, 'LATIN1'))", new { text }, cancellationToken: ct));
        });
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
    public async Task Text_it_takes_is_answered_as_usual()
    {
        (await (await _client.GetAsync("/latin1-length?text=abc", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetInt32().ShouldBe(3);
    }
}
