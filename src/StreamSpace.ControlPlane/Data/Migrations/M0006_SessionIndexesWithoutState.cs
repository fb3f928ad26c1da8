using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// The sessions indexes by owner and by agent no longer include <c>state</c>, and on PostgreSQL the table leaves
/// room in each page (fillfactor 80): a state change then touches no index column and fits its page, so
/// PostgreSQL updates the row in place (a HOT update) instead of adding an entry to every index of the table.
/// Sessions change state several times in their life (pending, starting, running, ...), and the per-state counts
/// those indexes served are kept by counters since M0004; lookups by owner or agent still use them.
/// </summary>
[Migration(2026112906, "Sessions indexes by owner and agent without the state column")]
public sealed class M0006_SessionIndexesWithoutState : Migration
{
    public override void Up()
    {
        Delete.Index("ix_sessions_user_state").OnTable("sessions");
        Delete.Index("ix_sessions_agent_state").OnTable("sessions");
        Create.Index("ix_sessions_user").OnTable("sessions").OnColumn("user_id").Ascending();
        Create.Index("ix_sessions_agent").OnTable("sessions").OnColumn("agent_id").Ascending();
        IfDatabase(t => t.StartsWith("Postgres", StringComparison.OrdinalIgnoreCase)).Execute.Sql("ALTER TABLE sessions SET (fillfactor = 80)");
    }

    public override void Down()
    {
        IfDatabase(t => t.StartsWith("Postgres", StringComparison.OrdinalIgnoreCase)).Execute.Sql("ALTER TABLE sessions RESET (fillfactor)");
        Delete.Index("ix_sessions_user").OnTable("sessions");
        Delete.Index("ix_sessions_agent").OnTable("sessions");
        Create.Index("ix_sessions_user_state").OnTable("sessions").OnColumn("user_id").Ascending().OnColumn("state").Ascending();
        Create.Index("ix_sessions_agent_state").OnTable("sessions").OnColumn("agent_id").Ascending().OnColumn("state").Ascending();
    }
}
