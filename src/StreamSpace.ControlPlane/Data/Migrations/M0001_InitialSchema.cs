using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>The first schema: users, templates, sessions, agents, the command outbox, the audit log, settings.</summary>
[Migration(2026112901, "Initial schema")]
public sealed class M0001_InitialSchema : Migration
{
    /// <summary>
    /// PostgreSQL's timestamptz. SQLite accepts the same type name (NUMERIC affinity) and stores the
    /// fixed-width UTC text written by <see cref="DapperSetup"/>, which orders correctly as text.
    /// </summary>
    internal const string Timestamp = "timestamptz";

    public override void Up()
    {
        Create.Table("settings")
            .WithColumn("key").AsString(100).PrimaryKey()
            .WithColumn("value").AsString(int.MaxValue).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable();

        Create.Table("users")
            .WithColumn("id").AsString(40).PrimaryKey()
            .WithColumn("username").AsString(64).NotNullable().Unique("ux_users_username")
            .WithColumn("password_hash").AsString(400).NotNullable()
            .WithColumn("role").AsString(16).NotNullable()
            .WithColumn("disabled").AsBoolean().NotNullable().WithDefaultValue(false)
            .WithColumn("max_sessions").AsInt32().NotNullable()
            // Bumped on disable, role change and password change: every token carrying an older value is refused.
            .WithColumn("token_version").AsInt32().NotNullable().WithDefaultValue(1)
            .WithColumn("created_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable();

        Create.Table("templates")
            .WithColumn("name").AsString(64).PrimaryKey()
            .WithColumn("display_name").AsString(200).NotNullable()
            .WithColumn("category").AsString(100).NotNullable()
            // The whole template as JSON (design §8); the columns above are for listing and filtering.
            .WithColumn("definition").AsString(int.MaxValue).NotNullable()
            .WithColumn("builtin").AsBoolean().NotNullable().WithDefaultValue(false)
            .WithColumn("created_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable();

        Create.Table("agents")
            .WithColumn("agent_id").AsString(64).PrimaryKey()
            .WithColumn("token_hash").AsString(200).NotNullable()
            .WithColumn("status").AsString(16).NotNullable()
            .WithColumn("last_heartbeat").AsCustom(Timestamp).Nullable()
            .WithColumn("platform").AsString(32).NotNullable()
            .WithColumn("region").AsString(64).NotNullable()
            .WithColumn("max_sessions").AsInt32().NotNullable()
            .WithColumn("active_sessions").AsInt32().NotNullable().WithDefaultValue(0)
            .WithColumn("version").AsString(64).Nullable()
            .WithColumn("draining").AsBoolean().NotNullable().WithDefaultValue(false)
            // Epoch of the socket that currently owns the agent; only its own cleanup may mark it offline.
            .WithColumn("connection_id").AsString(64).Nullable()
            .WithColumn("connected_at").AsCustom(Timestamp).Nullable()
            .WithColumn("created_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable();

        Create.Table("sessions")
            .WithColumn("id").AsString(200).PrimaryKey()
            .WithColumn("user_id").AsString(40).NotNullable().ForeignKey("fk_sessions_user", "users", "id")
            .WithColumn("username").AsString(64).NotNullable()
            .WithColumn("template").AsString(64).NotNullable()
            .WithColumn("state").AsString(16).NotNullable()
            .WithColumn("state_reason").AsString(1000).Nullable()
            .WithColumn("agent_id").AsString(64).Nullable()
            .WithColumn("cpu").AsString(32).NotNullable()
            .WithColumn("memory").AsString(32).NotNullable()
            .WithColumn("persistent_home").AsBoolean().NotNullable()
            .WithColumn("created_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("last_activity_at").AsCustom(Timestamp).Nullable();
        Create.Index("ix_sessions_user_state").OnTable("sessions").OnColumn("user_id").Ascending().OnColumn("state").Ascending();
        Create.Index("ix_sessions_agent_state").OnTable("sessions").OnColumn("agent_id").Ascending().OnColumn("state").Ascending();
        Create.Index("ix_sessions_template").OnTable("sessions").OnColumn("template").Ascending();

        Create.Table("agent_commands")
            .WithColumn("id").AsString(40).PrimaryKey()
            .WithColumn("agent_id").AsString(64).NotNullable()
            .WithColumn("session_id").AsString(200).Nullable()
            .WithColumn("type").AsString(40).NotNullable()
            .WithColumn("payload").AsString(int.MaxValue).NotNullable()
            // pending -> sent -> acked -> succeeded | failed | expired
            .WithColumn("state").AsString(16).NotNullable()
            .WithColumn("attempts").AsInt32().NotNullable().WithDefaultValue(0)
            .WithColumn("next_attempt_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("expires_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("result").AsString(int.MaxValue).Nullable()
            .WithColumn("error").AsString(2000).Nullable()
            .WithColumn("created_at").AsCustom(Timestamp).NotNullable()
            .WithColumn("updated_at").AsCustom(Timestamp).NotNullable();
        Create.Index("ix_agent_commands_agent_state").OnTable("agent_commands").OnColumn("agent_id").Ascending().OnColumn("state").Ascending();
        Create.Index("ix_agent_commands_session").OnTable("agent_commands").OnColumn("session_id").Ascending();

        Create.Table("audit_log")
            .WithColumn("id").AsInt64().PrimaryKey().Identity()
            .WithColumn("at").AsCustom(Timestamp).NotNullable()
            .WithColumn("actor").AsString(64).Nullable()
            .WithColumn("action").AsString(64).NotNullable()
            .WithColumn("target").AsString(200).Nullable()
            .WithColumn("detail").AsString(2000).Nullable()
            .WithColumn("client_ip").AsString(64).Nullable();
        Create.Index("ix_audit_actor").OnTable("audit_log").OnColumn("actor").Ascending();
        Create.Index("ix_audit_action").OnTable("audit_log").OnColumn("action").Ascending();
    }

    public override void Down()
    {
        Delete.Table("audit_log");
        Delete.Table("agent_commands");
        Delete.Table("sessions");
        Delete.Table("agents");
        Delete.Table("templates");
        Delete.Table("users");
        Delete.Table("settings");
    }
}
