using Dapper;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The whole transition table (design §5 plus docs/design-deviations.md entry 1), every pair of states,
/// applied to a real session row through <see cref="SessionStateMachine.TryTransitionAsync"/>.
/// The expected table is written out here independently, so a change to the code's table fails this test.
/// </summary>
public abstract class StateMachineTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly Dictionary<string, string[]> Expected = new()
    {
        ["pending"] = ["starting", "running", "terminating", "failed"],
        ["starting"] = ["running", "terminating", "failed"],
        ["running"] = ["hibernating", "terminating", "failed"],
        ["hibernating"] = ["hibernated", "running", "terminating", "failed"],
        ["hibernated"] = ["waking", "terminating", "failed"],
        ["waking"] = ["running", "hibernated", "terminating", "failed"],
        ["terminating"] = ["terminated"],
        ["terminated"] = [],
        ["failed"] = [],
    };

    public static TheoryData<string, string> AllPairs()
    {
        var data = new TheoryData<string, string>();
        foreach (var from in SessionState.All)
            foreach (var to in SessionState.All)
                data.Add(from, to);
        return data;
    }

    [Fact]
    public void The_expected_table_covers_every_state()
    {
        Expected.Keys.Order().ShouldBe(SessionState.All.Order());
        foreach (var from in SessionState.All)
            foreach (var to in SessionState.All)
                SessionStateMachine.CanTransition(from, to).ShouldBe(Expected[from].Contains(to), $"{from} -> {to}");
    }

    [Theory]
    [MemberData(nameof(AllPairs))]
    public async Task Every_pair_of_states_follows_the_table_on_a_real_row(string from, string to)
    {
        var (_, userId, username) = await cp.QuickUserAsync("sm");
        var id = $"{username}-xterm-{from[..3]}{to[..3]}";
        await cp.InsertSessionAsync(id, userId, username, from);
        var before = await ReadAsync(id);
        var now = DateTimeOffset.UtcNow.AddMinutes(5);

        await using var conn = await cp.Db.OpenAsync(Ct);
        var left = await SessionStateMachine.TryTransitionAsync(conn, null, id, to, "test reason", now, ct: Ct);

        var after = await ReadAsync(id);
        if (Expected[from].Contains(to))
        {
            left.ShouldBe(from);
            after.State.ShouldBe(to);
            after.StateReason.ShouldBe("test reason");
            after.UpdatedAt.ShouldBe(now, TimeSpan.FromMilliseconds(1));
        }
        else
        {
            left.ShouldBeNull();
            after.ShouldBe(before);
        }
    }

    [Fact]
    public async Task A_transition_with_a_stale_expected_state_changes_nothing()
    {
        var (_, userId, username) = await cp.QuickUserAsync("sm");
        var id = $"{username}-xterm-stale1";
        await cp.InsertSessionAsync(id, userId, username, SessionState.Running);
        await using var conn = await cp.Db.OpenAsync(Ct);

        // The caller believed the session was still starting; it has moved on, so the change must not apply.
        var left = await SessionStateMachine.TryTransitionAsync(conn, null, id, SessionState.Failed, "late", DateTimeOffset.UtcNow, SessionState.Starting, ct: Ct);

        left.ShouldBeNull();
        (await ReadAsync(id)).State.ShouldBe(SessionState.Running);
    }

    [Fact]
    public async Task An_unknown_session_is_not_transitioned()
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        var left = await SessionStateMachine.TryTransitionAsync(conn, null, "nobody-xterm-absent", SessionState.Starting, null, DateTimeOffset.UtcNow, ct: Ct);
        left.ShouldBeNull();
    }

    private sealed record Row
    {
        public string State { get; init; } = "";
        public string? StateReason { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
    }

    private async Task<Row> ReadAsync(string id)
    {
        await using var conn = await cp.Db.OpenAsync(Ct);
        return await conn.QuerySingleAsync<Row>("SELECT state AS State, state_reason AS StateReason, updated_at AS UpdatedAt FROM sessions WHERE id = @id", new { id });
    }
}

public sealed class StateMachineTests_Sqlite(SqliteControlPlane cp) : StateMachineTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class StateMachineTests_Postgres(PostgresControlPlane cp) : StateMachineTests(cp), IClassFixture<PostgresControlPlane>;
