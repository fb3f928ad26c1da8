using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>One-time viewer tickets (design §4, invariant 6): stored as SHA-256 hashes, bound to one session and one user.</summary>
[Migration(2026112902, "Viewer tickets")]
public sealed class M0002_ViewerTickets : Migration
{
    public override void Up()
    {
        Create.Table("viewer_tickets")
            .WithColumn("id").AsString(40).PrimaryKey()
            // Hex SHA-256 of the ticket; the ticket itself is never stored.
            .WithColumn("ticket_hash").AsString(64).NotNullable().Unique("ux_viewer_tickets_hash")
            .WithColumn("session_id").AsString(200).NotNullable()
            .WithColumn("user_id").AsString(40).NotNullable()
            .WithColumn("expires_at").AsCustom(M0001_InitialSchema.Timestamp).NotNullable()
            // Set exactly once, by the atomic consume (UPDATE ... WHERE used_at IS NULL).
            .WithColumn("used_at").AsCustom(M0001_InitialSchema.Timestamp).Nullable()
            .WithColumn("created_at").AsCustom(M0001_InitialSchema.Timestamp).NotNullable();
        // For purging old tickets.
        Create.Index("ix_viewer_tickets_expires").OnTable("viewer_tickets").OnColumn("expires_at").Ascending();
    }

    public override void Down() => Delete.Table("viewer_tickets");
}
