using System.Data.Common;
using Dapper;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>
/// A batch of hellos locks the agent rows it writes in agent-id order, the order placement and the heartbeat flush lock
/// them in, so it never deadlocks with a session create. PostgreSQL only: SQLite has no row locks (its writers are
/// serialized by the database's write lock and cannot deadlock on rows).
/// </summary>
[Trait("Category", "Timing")]
public sealed class HelloLockOrderTests_Postgres(HubPostgresControlPlane cp) : IClassFixture<HubPostgresControlPlane>
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_hello_batch_and_a_transaction_locking_agents_in_id_order_do_not_deadlock()
    {
        var ct = TestContext.Current.CancellationToken;
        var writer = cp.App.Services.GetRequiredService<AgentStatusWriter>();
        // b2 is inserted (so stored) before b1, while b1 sorts first: a statement that locks rows in the order it finds
        // them, or in the hellos' order (b2's hello comes first), takes b2 before b1; placement takes b1 before b2.
        var (b2, b2Token) = await cp.CreateAgentAsync("lockb");
        var (b1, b1Token) = await cp.CreateAgentAsync("locka");
        var (b0, b0Token) = await cp.CreateAgentAsync("lock0");
        string.CompareOrdinal(b1, b2).ShouldBeLessThan(0);
        var deadlocksBefore = await DeadlocksAsync();
        var first = await ScriptedAgent.ConnectAsync(cp.BaseAddress, b0, b0Token);
        var agent2 = await ScriptedAgent.ConnectAsync(cp.BaseAddress, b2, b2Token);
        var agent1 = await ScriptedAgent.ConnectAsync(cp.BaseAddress, b1, b1Token);
        await using (first)
        await using (agent2)
        await using (agent1)
        {
            await using var holdFirst = await cp.Db.OpenAsync(ct);
            await using var placement = await cp.Db.OpenAsync(ct);
            await using var holdFirstTx = await holdFirst.BeginTransactionAsync(ct);
            await using var placementTx = await placement.BeginTransactionAsync(ct);
            // The first hello's write waits for b0's row, so the next two hellos queue up and are written in ONE batch.
            await LockAsync(holdFirst, holdFirstTx, b0, ct);
            await first.SendHelloAsync();
            await HubControlPlane.EventuallyAsync(() => Task.FromResult(writer.HellosPending == 1), Soon, "the first hello's write is waiting");
            await agent2.SendHelloAsync();
            await HubControlPlane.EventuallyAsync(() => Task.FromResult(writer.HellosPending == 2), Soon, "b2's hello is queued");
            await agent1.SendHelloAsync();
            await HubControlPlane.EventuallyAsync(() => Task.FromResult(writer.HellosPending == 3), Soon, "b1's hello is queued");

            // A create's placement holds b1 and is about to lock b2 (agent-id order) when the batch of b1 and b2 runs.
            await LockAsync(placement, placementTx, b1, ct);
            await holdFirstTx.RollbackAsync(ct);
            await HubControlPlane.EventuallyAsync(async () => await WaitingHelloWritesAsync() == 1, Soon, "the batch of b2 and b1 waits for b1's row");
            // The batch must not hold b2 now: this lock either is granted, or deadlocks (PostgreSQL aborts the batch).
            await LockAsync(placement, placementTx, b2, ct);
            await placementTx.RollbackAsync(ct);

            foreach (var (agent, id) in new[] { (agent2, b2), (agent1, b1) })
            {
                var answer = await agent.NextAsync(Soon);
                answer.ShouldNotBeNull($"agent {id} got no answer to its hello");
                answer.Type.ShouldBe(MessageTypes.Welcome, $"agent {id} was not welcomed: {answer.Payload}");
                (await cp.AgentRowAsync(id))!.Status.ShouldBe(AgentStatus.Online, $"agent {id} is online");
                agent.IsOpen.ShouldBeTrue();
            }
            (await first.NextAsync(Soon))!.Type.ShouldBe(MessageTypes.Welcome);
        }
        // The welcomes alone do not show it: a batch aborted as a deadlock victim is run again (Db.InTransactionAsync) and
        // succeeds once the placement let go. The victim's backend counts the deadlock in its statistics and reports them
        // when it is next idle (after its rollback, before the retry); a report can still be held back by contention, so
        // the count is watched for a while.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        do
        {
            (await DeadlocksAsync()).ShouldBe(deadlocksBefore, "the hello batch deadlocked (and was run again)");
            await Task.Delay(200, ct);
        }
        while (watch.Elapsed < TimeSpan.FromSeconds(2));
    }

    /// <summary>Deadlocks PostgreSQL detected in this test class's database.</summary>
    private Task<long> DeadlocksAsync() => cp.ScalarAsync<long>("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");

    private static Task LockAsync(DbConnection conn, DbTransaction tx, string agentId, CancellationToken ct) =>
        conn.ExecuteAsync(new CommandDefinition("SELECT 1 FROM agents WHERE agent_id = @agentId FOR NO KEY UPDATE", new { agentId }, tx, cancellationToken: ct));

    /// <summary>Statements of the hello write waiting for a row lock.</summary>
    private Task<long> WaitingHelloWritesAsync() => cp.ScalarAsync<long>(
        """
        SELECT COUNT(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%UPDATE agents a SET status = %, connection_id = v.connection_id%'
        """);
}
