using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection;
using StreamSpace.ControlPlane.Data;
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
public sealed class DataProtectionKeyStoreTests_Postgres() : DataProtectionKeyStoreTests(DatabaseKind.Postgres);
