using FluentMigrator;

namespace StreamSpace.ControlPlane.Data.Migrations;

/// <summary>
/// Live-session counts per agent and per user, kept by the database itself: triggers on <c>sessions</c> adjust
/// them in the same transaction as every insert, state change and delete, whatever code (or test, or admin SQL)
/// writes the row, so they cannot drift. Placement and quota read two small rows instead of counting every live
/// session in each create transaction (the count grew with the number of live sessions).
/// Live = pending, starting, running, hibernating, hibernated, waking, terminating (<see cref="Sessions.SessionState.Live"/>);
/// the list is spelled out here because a migration must not change when code constants do.
/// </summary>
[Migration(2026112904, "Live-session counters per agent and user")]
public sealed class M0004_LiveSessionCounters : Migration
{
    private const string LiveStates = "'pending', 'starting', 'running', 'hibernating', 'hibernated', 'waking', 'terminating'";

    /// <summary>The PostgreSQL row trigger of this migration (M0005 replaces it, and its Down puts this one back).</summary>
    internal const string PostgresRowTrigger = $$"""
            CREATE FUNCTION sessions_live_counters() RETURNS trigger LANGUAGE plpgsql AS $fn$
            DECLARE
                old_live boolean := TG_OP IN ('UPDATE', 'DELETE') AND OLD.state IN ({{LiveStates}});
                new_live boolean := TG_OP IN ('UPDATE', 'INSERT') AND NEW.state IN ({{LiveStates}});
            BEGIN
                IF TG_OP = 'UPDATE' AND old_live = new_live AND OLD.agent_id IS NOT DISTINCT FROM NEW.agent_id AND OLD.user_id = NEW.user_id THEN
                    RETURN NULL;
                END IF;
                IF old_live THEN
                    UPDATE user_live_sessions SET live = live - 1 WHERE user_id = OLD.user_id;
                    IF OLD.agent_id IS NOT NULL THEN
                        UPDATE agent_live_sessions SET live = live - 1 WHERE agent_id = OLD.agent_id;
                    END IF;
                END IF;
                IF new_live THEN
                    INSERT INTO user_live_sessions (user_id, live) VALUES (NEW.user_id, 1)
                        ON CONFLICT (user_id) DO UPDATE SET live = user_live_sessions.live + 1;
                    IF NEW.agent_id IS NOT NULL THEN
                        INSERT INTO agent_live_sessions (agent_id, live) VALUES (NEW.agent_id, 1)
                            ON CONFLICT (agent_id) DO UPDATE SET live = agent_live_sessions.live + 1;
                    END IF;
                END IF;
                RETURN NULL;
            END
            $fn$;
            CREATE TRIGGER sessions_live_counters AFTER INSERT OR UPDATE OR DELETE ON sessions
                FOR EACH ROW EXECUTE FUNCTION sessions_live_counters();
            """;

    public override void Up()
    {
        Create.Table("agent_live_sessions")
            .WithColumn("agent_id").AsString(64).PrimaryKey()
            .WithColumn("live").AsInt64().NotNullable();
        Create.Table("user_live_sessions")
            .WithColumn("user_id").AsString(40).PrimaryKey()
            .WithColumn("live").AsInt64().NotNullable();

        IfDatabase(t => t.StartsWith("Postgres", StringComparison.OrdinalIgnoreCase)).Execute.Sql(PostgresRowTrigger);

        IfDatabase("SQLite").Execute.Sql($"""
            CREATE TRIGGER sessions_live_insert AFTER INSERT ON sessions WHEN NEW.state IN ({LiveStates})
            BEGIN
                INSERT INTO user_live_sessions (user_id, live) VALUES (NEW.user_id, 1)
                    ON CONFLICT (user_id) DO UPDATE SET live = live + 1;
                INSERT INTO agent_live_sessions (agent_id, live) SELECT NEW.agent_id, 1 WHERE NEW.agent_id IS NOT NULL
                    ON CONFLICT (agent_id) DO UPDATE SET live = live + 1;
            END;
            CREATE TRIGGER sessions_live_delete AFTER DELETE ON sessions WHEN OLD.state IN ({LiveStates})
            BEGIN
                UPDATE user_live_sessions SET live = live - 1 WHERE user_id = OLD.user_id;
                UPDATE agent_live_sessions SET live = live - 1 WHERE agent_id = OLD.agent_id;
            END;
            CREATE TRIGGER sessions_live_update AFTER UPDATE OF state, agent_id, user_id ON sessions
                WHEN (OLD.state IN ({LiveStates})) <> (NEW.state IN ({LiveStates})) OR OLD.agent_id IS NOT NEW.agent_id OR OLD.user_id <> NEW.user_id
            BEGIN
                UPDATE user_live_sessions SET live = live - 1 WHERE OLD.state IN ({LiveStates}) AND user_id = OLD.user_id;
                UPDATE agent_live_sessions SET live = live - 1 WHERE OLD.state IN ({LiveStates}) AND agent_id = OLD.agent_id;
                INSERT INTO user_live_sessions (user_id, live) SELECT NEW.user_id, 1 WHERE NEW.state IN ({LiveStates})
                    ON CONFLICT (user_id) DO UPDATE SET live = live + 1;
                INSERT INTO agent_live_sessions (agent_id, live) SELECT NEW.agent_id, 1 WHERE NEW.state IN ({LiveStates}) AND NEW.agent_id IS NOT NULL
                    ON CONFLICT (agent_id) DO UPDATE SET live = live + 1;
            END;
            """);

        // Sessions that exist already (an upgrade) are counted once here; the triggers keep the counts from now on.
        Execute.Sql($"""
            INSERT INTO user_live_sessions (user_id, live)
                SELECT user_id, COUNT(*) FROM sessions WHERE state IN ({LiveStates}) GROUP BY user_id;
            INSERT INTO agent_live_sessions (agent_id, live)
                SELECT agent_id, COUNT(*) FROM sessions WHERE state IN ({LiveStates}) AND agent_id IS NOT NULL GROUP BY agent_id;
            """);
    }

    public override void Down()
    {
        IfDatabase(t => t.StartsWith("Postgres", StringComparison.OrdinalIgnoreCase)).Execute.Sql("DROP TRIGGER sessions_live_counters ON sessions; DROP FUNCTION sessions_live_counters();");
        IfDatabase("SQLite").Execute.Sql("DROP TRIGGER sessions_live_insert; DROP TRIGGER sessions_live_delete; DROP TRIGGER sessions_live_update;");
        Delete.Table("user_live_sessions");
        Delete.Table("agent_live_sessions");
    }
}
