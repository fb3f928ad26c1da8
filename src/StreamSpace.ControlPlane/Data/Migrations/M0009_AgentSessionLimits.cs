using FluentMigrator;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// What each agent said in its last hello about enforcing sessions' cpu/memory (<see cref="HelloPayload.SessionLimits"/>),
/// so an operator sees in the agents list which agents do not.
/// </summary>
[Migration(2026113009, "Agents: whether session limits are enforced, from the hello")]
public sealed class M0009_AgentSessionLimits : Migration
{
    public override void Up() =>
        Alter.Table("agents").AddColumn("session_limits").AsString(HelloPayload.MaxSessionLimitsLength).Nullable();

    public override void Down() => Delete.Column("session_limits").FromTable("agents");
}
