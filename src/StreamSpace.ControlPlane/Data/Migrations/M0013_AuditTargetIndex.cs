using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// <c>GET /api/v1/audit?user=</c> asks for the entries whose actor or target is the user. Only the actor had an index, so
/// the target half of that OR read the whole log on PostgreSQL; with this one, both halves are index lookups.
/// </summary>
[Migration(2026120113, "Audit log: index by target")]
public sealed class M0013_AuditTargetIndex : Migration
{
    public override void Up() =>
        Create.Index("ix_audit_target").OnTable("audit_log").OnColumn("target").Ascending();

    public override void Down() => Delete.Index("ix_audit_target").OnTable("audit_log");
}
