using Dapper;
using Npgsql;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// What one replica learns from the others through PostgreSQL LISTEN/NOTIFY, on one dedicated connection. Notifications
/// are sent inside the writing transaction, so they arrive when it commits; they are only hints, never the truth:
/// <list type="bullet">
/// <item><see cref="CommandsChannel"/> (design §9): a replica that writes a command for an agent whose socket another
/// replica holds notifies <c>'&lt;agentId&gt;'</c> (<see cref="CommandOutbox.PgInsertMany"/>), and the replica holding it
/// delivers at once instead of at its next poll. The command row is the truth and the delivery poll
/// (<c>CommandPollInterval</c>) still finds anything a lost notification missed; after each (re)connect everything due is
/// delivered at once for the same reason.</item>
/// <item><see cref="UsersChannel"/>: every change of a <c>users</c> row notifies <c>'&lt;userId&gt;'</c> (a trigger,
/// migration M0008, so a change made with plain SQL counts too), and <see cref="TokenUserLookup"/> forgets that user.
/// It keeps users only while this connection listens: it starts empty after each (re)connect and stops the moment the
/// connection fails.</item>
/// </list>
/// SQLite is single-replica: nothing to listen to.
/// </summary>
internal sealed class DatabaseNotificationListener(
    Db db, CommandDelivery delivery, TokenUserLookup tokenUsers, HubMetrics metrics, TimeProvider time, ILogger<DatabaseNotificationListener> logger)
    : BackgroundService
{
    public const string CommandsChannel = "streamspace_commands";
    public const string UsersChannel = "streamspace_users";

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
                await using var conn = await db.OpenUnpooledAsync(stoppingToken);
                conn.Notification += OnNotification;
                await conn.ExecuteAsync(new CommandDefinition($"LISTEN {CommandsChannel}; LISTEN {UsersChannel}", cancellationToken: stoppingToken));
                retry = RetryMin;
                // Anything written while this replica was not listening counts now: commands are delivered at once, and
                // users are read afresh from here on.
                tokenUsers.StartCaching();
                delivery.RequestAll();
                while (true)
                {
                    if (!await conn.WaitAsync(IdleCheck, stoppingToken))
                        await conn.ExecuteAsync(new CommandDefinition("SELECT 1", cancellationToken: stoppingToken));
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                tokenUsers.StopCaching();
                return;
            }
            catch (Exception ex)
            {
                tokenUsers.StopCaching();
                logger.LogWarning(HubEvents.HubLoopFailed, "Listening for changes made on other replicas failed, listening again in {Delay} " +
                    "(until then the delivery poll finds their commands and every request reads its user): {Error}", retry, ex.Message);
                try { await Task.Delay(retry, time, stoppingToken); }
                catch (OperationCanceledException) { return; }
                retry = TimeSpan.FromTicks(Math.Min(RetryMax.Ticks, retry.Ticks * 2));
            }
        }
    }

    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        if (e.Payload.Length == 0) return;
        switch (e.Channel)
        {
            case CommandsChannel:
                metrics.CommandWakeUpReceived();
                delivery.Request(e.Payload);
                break;
            case UsersChannel:
                tokenUsers.Invalidate(e.Payload);
                break;
        }
    }
}
