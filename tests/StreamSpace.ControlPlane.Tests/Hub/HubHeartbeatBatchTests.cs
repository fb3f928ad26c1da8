using StreamSpace.ControlPlane.Agents;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>Heartbeats are written in batches (one transaction per flush), not one UPDATE each, and every row still advances.</summary>
public abstract class HubHeartbeatBatchTests(HubControlPlane cp)
{
    [Fact]
    public async Task Twenty_agents_heartbeating_are_written_in_a_few_batches_and_every_row_advances()
    {
        var agents = new List<ScriptedAgent>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                var (agentId, token) = await cp.CreateAgentAsync("batch");
                // Heartbeats are sent by hand below, so the counts are known.
                agents.Add(await cp.OnlineAgentAsync(agentId, token, heartbeat: false));
            }
            var helloBeats = new Dictionary<string, DateTimeOffset>();
            foreach (var a in agents) helloBeats[a.AgentId] = (await cp.AgentRowAsync(a.AgentId))!.LastHeartbeat!.Value;

            await Task.Delay(TimeSpan.FromMilliseconds(300), TestContext.Current.CancellationToken);
            var batchesBefore = cp.Metrics.HeartbeatBatches;
            var rowsBefore = cp.Metrics.HeartbeatRowsWritten;
            for (var round = 0; round < 2; round++)
            {
                await Task.WhenAll(agents.Select(a => a.HeartbeatAsync()));
                await Task.Delay(TimeSpan.FromMilliseconds(1200), TestContext.Current.CancellationToken);
            }

            foreach (var a in agents)
            {
                var row = (await cp.AgentRowAsync(a.AgentId))!;
                row.Status.ShouldBe(AgentStatus.Online);
                row.LastHeartbeat!.Value.ShouldBeGreaterThan(helloBeats[a.AgentId], $"agent {a.AgentId}'s heartbeat was written");
            }
            var batches = cp.Metrics.HeartbeatBatches - batchesBefore;
            var rows = cp.Metrics.HeartbeatRowsWritten - rowsBefore;
            rows.ShouldBeGreaterThanOrEqualTo(20);
            batches.ShouldBeGreaterThan(0);
            // 40 heartbeats arrive in two bursts, about one flush interval apart: a handful of flushes, not 40 writes.
            batches.ShouldBeLessThanOrEqualTo(6, $"{rows} rows were written in {batches} batches");
        }
        finally
        {
            foreach (var a in agents) await a.DisposeAsync();
        }
    }
}

[Trait("Category", "Timing")]
public sealed class HubHeartbeatBatchTests_Sqlite(HubSqliteControlPlane cp) : HubHeartbeatBatchTests(cp), IClassFixture<HubSqliteControlPlane>;
[Trait("Category", "Timing")]
public sealed class HubHeartbeatBatchTests_Postgres(HubPostgresControlPlane cp) : HubHeartbeatBatchTests(cp), IClassFixture<HubPostgresControlPlane>;
