using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// The delivery poll asks, once a second per replica, which agents have commands due; this index answers
/// it from the open rows without scanning the command history.
/// </summary>
[Migration(2026112903, "Index for due commands")]
public sealed class M0003_CommandDueIndex : Migration
{
    public override void Up() =>
        Create.Index("ix_agent_commands_state_next").OnTable("agent_commands")
            .OnColumn("state").Ascending().OnColumn("next_attempt_at").Ascending();

    public override void Down() => Delete.Index("ix_agent_commands_state_next").OnTable("agent_commands");
}
