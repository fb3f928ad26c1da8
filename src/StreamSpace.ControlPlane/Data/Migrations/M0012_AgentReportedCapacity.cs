using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// The capacity the agent itself reports (<c>capacity.maxSessions</c> in its hello, <c>maxSessions</c> in its heartbeats),
/// apart from the maximum an admin registered (<c>max_sessions</c>). The agent refuses a start beyond its own figure, so
/// placement fills an agent only up to the smaller of the two. Null until the agent's first hello after this runs: then the
/// registered maximum alone applies, as before.
/// </summary>
[Migration(2026113012, "Agents: the capacity the agent reports")]
public sealed class M0012_AgentReportedCapacity : Migration
{
    public override void Up() =>
        Alter.Table("agents").AddColumn("reported_capacity").AsInt32().Nullable();

    public override void Down() => Delete.Column("reported_capacity").FromTable("agents");
}
