using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Where a viewer waiting for its stream meets the agent's dial-back (design §6 rendezvous). Pending
/// streams live in memory on this replica only, for at most <see cref="StreamingOptions.DataTokenLifetime"/>:
/// they exist only for the seconds between <c>stream.open</c> and the agent's data socket.
/// </summary>
public sealed class StreamRendezvous(TimeProvider time, IOptions<StreamingOptions> options)
{
    private readonly ConcurrentDictionary<string, PendingStream> _pending = new(StringComparer.Ordinal);

    /// <summary>Path (relative to the control plane base URL) the agent dials for <paramref name="streamId"/>.</summary>
    public static string DataPath(string streamId) => $"/api/v1/agents/streams/{streamId}";

    /// <summary>Registers a stream awaiting its agent side; dispose it to withdraw it.</summary>
    public PendingStream Open(string sessionId)
    {
        var streamId = Guid.NewGuid().ToString("N");
        var token = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));
        var pending = new PendingStream(this, streamId, sessionId, token, Hash(token), time.GetUtcNow() + options.Value.DataTokenLifetime);
        _pending[streamId] = pending;
        return pending;
    }

    /// <summary>
    /// The agent side presenting its one-time token. Succeeds at most once per stream; the entry is
    /// removed whatever the outcome of a matching stream id, so a token cannot be tried twice.
    /// </summary>
    public PendingStream? Claim(string streamId, string? token)
    {
        if (token is null || !_pending.TryRemove(streamId, out var pending)) return null;
        var presented = Hash(token);
        if (!CryptographicOperations.FixedTimeEquals(presented, pending.TokenHash)) return null;
        return time.GetUtcNow() < pending.ExpiresAt ? pending : null;
    }

    internal int PendingCount => _pending.Count;

    private void Withdraw(PendingStream pending) => _pending.TryRemove(new KeyValuePair<string, PendingStream>(pending.StreamId, pending));

    private static byte[] Hash(string token) => SHA256.HashData(Encoding.ASCII.GetBytes(token));

    /// <summary>A stream between <c>stream.open</c> and the agent's data socket, then until the relay ends.</summary>
    public sealed class PendingStream : IDisposable
    {
        private readonly StreamRendezvous _owner;
        private readonly TaskCompletionSource<WebSocket> _agentSocket = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _relayDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

        internal PendingStream(StreamRendezvous owner, string streamId, string sessionId, string token, byte[] tokenHash, DateTimeOffset expiresAt)
        {
            _owner = owner;
            StreamId = streamId;
            SessionId = sessionId;
            Token = token;
            TokenHash = tokenHash;
            ExpiresAt = expiresAt;
        }

        public string StreamId { get; }
        public string SessionId { get; }
        /// <summary>The one-time secret for the agent, sent inside the <c>stream.open</c> command only.</summary>
        public string Token { get; }
        internal byte[] TokenHash { get; }
        public DateTimeOffset ExpiresAt { get; }

        /// <summary>Completes when the agent's data socket arrived.</summary>
        public Task<WebSocket> AgentSocket => _agentSocket.Task;

        /// <summary>Completes when the relay stopped using the agent's socket; the agent's request ends then.</summary>
        public Task RelayDone => _relayDone.Task;

        /// <summary>Hands over the agent's socket; false when the viewer already gave up.</summary>
        internal bool Deliver(WebSocket socket) => _agentSocket.TrySetResult(socket);

        public void Dispose()
        {
            _owner.Withdraw(this);
            _agentSocket.TrySetCanceled();
            _relayDone.TrySetResult();
        }
    }
}
