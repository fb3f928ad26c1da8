using Dapper;
using Npgsql;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Commands;

/// <summary>
/// Cross-replica command routing (design §9) on PostgreSQL: a replica that writes a command for an agent whose socket
/// another replica holds sends <c>NOTIFY streamspace_commands, '&lt;agentId&gt;'</c> in the writing transaction
/// (<see cref="CommandOutbox.PgInsertMany"/>), so it arrives when the command is committed; every replica LISTENs here
/// and delivers at once to the agents connected to it. The notification is only a wake-up: the command row is the
/// truth, and the delivery poll (<c>CommandPollInterval</c>) still finds anything a lost notification missed — after
/// a reconnect of this listener, everything due is delivered at once for the same reason. SQLite is single-replica.
/// </summary>
internal sealed class CommandNotificationListener(
    Db db, CommandDelivery delivery, HubMetrics metrics, TimeProvider time, ILogger<CommandNotificationListener> logger)
    : BackgroundService
{
    public const string Channel = "streamspace_commands";

    /// <summary>A connection that died quietly would wait forever: it is checked this often while nothing arrives.</summary>
    private static readonly TimeSpan IdleCheck = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan RetryMin = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan RetryMax = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!db.IsPostgres) return;
        var retry = RetryMin;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var conn = (NpgsqlConnection)await db.OpenAsync(stoppingToken);
                conn.Notification += OnNotification;
                await conn.ExecuteAsync(new CommandDefinition($"LISTEN {Channel}", cancellationToken: stoppingToken));
                retry = RetryMin;
                // Anything written while this replica was not listening is delivered now, not at the next poll.
                delivery.RequestAll();
                while (true)
                {
                    if (!await conn.WaitAsync(IdleCheck, stoppingToken))
                        await conn.ExecuteAsync(new CommandDefinition("SELECT 1", cancellationToken: stoppingToken));
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogWarning(HubEvents.HubLoopFailed, "Listening for commands written on other replicas failed, listening again in {Delay} " +
                    "(until then the delivery poll finds them): {Error}", retry, ex.Message);
                try { await Task.Delay(retry, time, stoppingToken); }
                catch (OperationCanceledException) { return; }
                retry = TimeSpan.FromTicks(Math.Min(RetryMax.Ticks, retry.Ticks * 2));
            }
        }
    }

    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        if (e.Channel != Channel || e.Payload.Length == 0) return;
        metrics.CommandWakeUpReceived();
        delivery.Request(e.Payload);
    }
}
