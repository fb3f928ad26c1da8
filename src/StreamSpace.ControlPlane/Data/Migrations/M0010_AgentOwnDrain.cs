using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// An agent's own drain (it reports <c>draining</c> while it stops) kept apart from an admin's drain: <c>agents.draining</c>
/// is now the admin's alone (set by <c>POST /api/v1/agents/{id}/drain</c>, lifted by <c>/undrain</c>), and
/// <c>agent_draining</c> is what the agent's last hello or heartbeat said, so a restarted agent that says
/// <c>draining: false</c> is placeable again. Placement skips an agent when either is set. A <c>draining</c> already
/// set when this runs stays (it may have been an admin's); an admin lifts it with <c>/undrain</c>.
/// </summary>
[Migration(2026113010, "Agents: the agent's own drain apart from an admin's")]
public sealed class M0010_AgentOwnDrain : Migration
{
    public override void Up() =>
        Alter.Table("agents").AddColumn("agent_draining").AsBoolean().NotNullable().WithDefaultValue(false);

    public override void Down() => Delete.Column("agent_draining").FromTable("agents");
}
