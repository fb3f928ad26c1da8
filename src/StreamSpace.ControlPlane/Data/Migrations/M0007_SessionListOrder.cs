using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// Indexes in the order <c>GET /api/v1/sessions</c> pages through sessions (newest first: <c>created_at</c>, then
/// <c>id</c>), so a page is read from an index instead of sorting every session of the history: one over all
/// sessions for an admin's list, and the owner's index extended by the same order for a user's list. Neither
/// column ever changes, so state changes stay HOT updates (M0006).
/// </summary>
[Migration(2026112907, "Sessions indexes in list order (newest first) for paging")]
public sealed class M0007_SessionListOrder : Migration
{
    public override void Up()
    {
        Delete.Index("ix_sessions_user").OnTable("sessions");
        Create.Index("ix_sessions_user_created").OnTable("sessions")
            .OnColumn("user_id").Ascending().OnColumn("created_at").Ascending().OnColumn("id").Ascending();
        Create.Index("ix_sessions_created").OnTable("sessions").OnColumn("created_at").Ascending().OnColumn("id").Ascending();
    }

    public override void Down()
    {
        Delete.Index("ix_sessions_created").OnTable("sessions");
        Delete.Index("ix_sessions_user_created").OnTable("sessions");
        Create.Index("ix_sessions_user").OnTable("sessions").OnColumn("user_id").Ascending();
    }
}
