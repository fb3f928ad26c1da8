using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// The token version of the user a viewer ticket was issued to, as it was at issue. A ticket presented after that
/// version moved on (a password or role change, a revocation) is refused at the viewer endpoint, and an open stream
/// carries the issuing version, so the change that follows it is seen by <c>ViewerAccess</c>. Tickets live ≤ 60 s,
/// and the ones already issued when this runs (or by a replica not upgraded yet) get 0, which no user has (they start at
/// 1): such a ticket is judged by the user's version at use, as before (<c>ViewerTicketStore.UnrecordedTokenVersion</c>).
/// </summary>
[Migration(2026113011, "Viewer tickets: the issuing user's token version")]
public sealed class M0011_ViewerTicketTokenVersion : Migration
{
    public override void Up() =>
        Alter.Table("viewer_tickets").AddColumn("token_version").AsInt32().NotNullable().WithDefaultValue(0);

    public override void Down() => Delete.Column("token_version").FromTable("viewer_tickets");
}
