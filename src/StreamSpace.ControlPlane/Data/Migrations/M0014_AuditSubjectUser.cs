using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// <c>GET /api/v1/audit?user=</c> matched the user as actor or target, so it missed what others did to the user's sessions
/// (their target is the session id) and caught entries of a template or agent named like the user. <c>subject_user</c>
/// names the user an entry is about where the target is not the user: the owner of the session acted on. Entries written
/// before this migration have none.
/// </summary>
[Migration(2026120114, "Audit log: the user an entry is about")]
public sealed class M0014_AuditSubjectUser : Migration
{
    public override void Up()
    {
        Alter.Table("audit_log").AddColumn("subject_user").AsString(64).Nullable();
        Create.Index("ix_audit_subject_user").OnTable("audit_log").OnColumn("subject_user").Ascending();
    }

    public override void Down()
    {
        Delete.Index("ix_audit_subject_user").OnTable("audit_log");
        Delete.Column("subject_user").FromTable("audit_log");
    }
}
