using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Sends <c>stream.open</c> through the command outbox with a short TTL: a stream request that has not
/// reached the agent within it is of no use to the viewer, who has long been told so.
/// </summary>
internal sealed class CommandStreamOpener(Db db, CommandOutbox outbox, IOptions<StreamingOptions> options) : IStreamOpener
{
    public async Task OpenAsync(string agentId, string sessionId, StreamOpenArgs args, CancellationToken ct)
    {
        await db.InTransactionAsync(
            (conn, tx) => outbox.EnqueueAsync(conn, tx, agentId, sessionId, CommandTypes.StreamOpen, args, ct, options.Value.StreamOpenCommandTtl),
            ct);
        outbox.NotifyQueued(agentId);
    }
}
