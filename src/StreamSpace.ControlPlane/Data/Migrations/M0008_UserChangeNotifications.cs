using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// PostgreSQL only: every update or delete of a <c>users</c> row sends <c>NOTIFY streamspace_users, '&lt;id&gt;'</c> from
/// its own transaction (delivered at commit), so every replica forgets the row it kept for token checks
/// (<see cref="Identity.TokenUserLookup"/>) — also when an operator changes a user with plain SQL. Users change rarely,
/// so a row trigger costs nothing measurable. SQLite is single-replica and keeps nothing.
/// </summary>
[Migration(2026113008, "Notify replicas of changed users")]
public sealed class M0008_UserChangeNotifications : Migration
{
    public override void Up() =>
        IfDatabase(IsPostgres).Execute.Sql($"""
            CREATE FUNCTION users_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM pg_notify('{DatabaseNotificationListener.UsersChannel}', OLD.id);
                RETURN NULL;
            END
            $fn$;
            CREATE TRIGGER users_changed_notify AFTER UPDATE OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION users_changed_notify();
            """);

    public override void Down() =>
        IfDatabase(IsPostgres).Execute.Sql("""
            DROP TRIGGER users_changed_notify ON users;
            DROP FUNCTION users_changed_notify();
            """);

    private static bool IsPostgres(string databaseType) => databaseType.StartsWith("Postgres", StringComparison.OrdinalIgnoreCase);
}
