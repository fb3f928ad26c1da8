using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The Data Protection key ring in the database (design §9: any replica accepts the sign-in cookie another issued). The
/// end-to-end test with two control-plane processes is <c>SignInAcrossReplicasTests</c>; these pin the store itself.
/// </summary>
public abstract class DataProtectionKeyStoreTests(DatabaseKind kind)
{
    [Fact]
    public async Task What_one_replicas_key_ring_protects_another_replicas_unprotects()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);
        await using var dbA = new Db(database.Target);
        await using var dbB = new Db(database.Target);
        using var replicaA = KeyRing(dbA);
        using var replicaB = KeyRing(dbB);

        var protectedByA = replicaA.GetRequiredService<IDataProtectionProvider>().CreateProtector("cookie").Protect("ticket");

        replicaB.GetRequiredService<IDataProtectionProvider>().CreateProtector("cookie").Unprotect(protectedByA).ShouldBe("ticket");
        var keys = new DataProtectionKeyStore(dbB, TimeProvider.System).GetAllElements();
        keys.Count.ShouldBe(1, "B found A's key and made none of its own");
    }

    [Fact]
    public async Task An_element_stored_under_a_name_already_taken_or_too_long_is_kept_under_another()
    {
        await using var database = await TestDatabase.CreateAsync(kind);
        SchemaMigrator.MigrateUp(database.Target);
        await using var db = new Db(database.Target);
        var store = new DataProtectionKeyStore(db, TimeProvider.System);

        store.StoreElement(new XElement("key", new XAttribute("id", "1")), "key-1");
        store.StoreElement(new XElement("key", new XAttribute("id", "2")), "key-1");
        store.StoreElement(new XElement("revocation", new XAttribute("id", "3")), new string('r', 200));

        store.GetAllElements().Select(e => e.Attribute("id")!.Value).Order().ShouldBe(["1", "2", "3"]);
    }

    /// <summary>A replica's Data Protection services as the control plane registers them, on <paramref name="db"/>.</summary>
    private static ServiceProvider KeyRing(Db db)
    {
        var services = new ServiceCollection();
        services.AddSingleton(db);
        services.AddSingleton(TimeProvider.System);
        services.AddLogging();
        services.AddStreamSpaceDataProtection();
        return services.BuildServiceProvider();
    }
}

public sealed class DataProtectionKeyStoreTests_Sqlite() : DataProtectionKeyStoreTests(DatabaseKind.Sqlite);
/// <summary>Several replicas on one database (PostgreSQL only: SQLite serves one replica).</summary>
public sealed class DataProtectionKeyStoreTests_Postgres() : DataProtectionKeyStoreTests(DatabaseKind.Postgres)
{
    [Fact]
    public async Task Replicas_starting_at_once_on_a_fresh_database_share_one_key()
    {
        // Each made its own first key when both found none: the one that stored last used its own, which the other never
        // read, so its cookies and antiforgery tokens were refused there until that one's key ring refresh (about a day).
        await using var database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        var data = Path.Combine(Path.GetTempPath(), "streamspace-tests", "data-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(data);
        var replicas = Enumerable.Range(0, 2).Select(_ => StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(data, embeddedAgent: false,
            [$"--StreamSpace:Database={database.Setting}"]))).ToList();
        try
        {
            using var start = new SemaphoreSlim(0);
            var starts = replicas.Select(app => Task.Run(async () =>
            {
                await start.WaitAsync(TestContext.Current.CancellationToken);
                await app.StartAsync(TestContext.Current.CancellationToken);
            })).ToList();
            start.Release(starts.Count);
            await Task.WhenAll(starts);

            await using var db = new Db(database.Target);
            new DataProtectionKeyStore(db, TimeProvider.System).GetAllElements().Count.ShouldBe(1, "the replicas made a key each");
            foreach (var (from, to) in ((int, int)[])[(0, 1), (1, 0)])
            {
                var payload = Protector(replicas[from]).Protect($"ticket from {from}");
                Protector(replicas[to]).Unprotect(payload).ShouldBe($"ticket from {from}");
            }
        }
        finally
        {
            foreach (var app in replicas)
            {
                await app.StopAsync(CancellationToken.None);
                await app.DisposeAsync();
            }
            try { Directory.Delete(data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }

        static IDataProtector Protector(WebApplication app) => app.Services.GetRequiredService<IDataProtectionProvider>().CreateProtector("cookie");
    }
}
