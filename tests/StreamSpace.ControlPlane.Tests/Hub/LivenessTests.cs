using Microsoft.Extensions.Time.Testing;
using StreamSpace.ControlPlane.Agents.Hub;

namespace StreamSpace.ControlPlane.Tests.Hub;

/// <summary>The pure liveness decisions (invariant 1), on a fake clock.</summary>
public sealed class LivenessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero));

    [Fact]
    public void Heartbeats_keep_an_agent_online_and_silence_longer_than_the_timeout_takes_it_offline()
    {
        var liveness = new AgentLiveness(Timeout);
        liveness.Connected("a", "c1", _clock.GetUtcNow()).ShouldBeNull();
        for (var i = 0; i < 10; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(10));
            liveness.Heard("a", "c1", _clock.GetUtcNow()).ShouldBeTrue();
            liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeTrue();
            liveness.TakeTimedOut(_clock.GetUtcNow()).ShouldBeEmpty();
        }
        _clock.Advance(Timeout);
        liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeTrue("exactly the timeout is not yet longer than it");
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeFalse();
        liveness.TakeTimedOut(_clock.GetUtcNow()).ShouldBe([("a", "c1")]);
        liveness.Count.ShouldBe(0);
        liveness.Heard("a", "c1", _clock.GetUtcNow()).ShouldBeFalse("a timed-out connection is stale and must be closed");
    }

    [Fact]
    public void A_replaced_connection_can_neither_mark_its_replacement_offline_nor_keep_it_alive()
    {
        var liveness = new AgentLiveness(Timeout);
        liveness.Connected("a", "old", _clock.GetUtcNow());
        _clock.Advance(TimeSpan.FromSeconds(1));
        liveness.Connected("a", "new", _clock.GetUtcNow()).ShouldBe("old");

        liveness.Closed("a", "old").ShouldBeFalse("the stale socket's cleanup must not mark the agent offline");
        liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeTrue();
        liveness.IsCurrent("a", "new").ShouldBeTrue();

        _clock.Advance(TimeSpan.FromSeconds(20));
        liveness.Heard("a", "old", _clock.GetUtcNow()).ShouldBeFalse();
        _clock.Advance(TimeSpan.FromSeconds(11));
        liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeFalse("frames on the stale socket do not count for the new one");

        liveness.TakeTimedOut(_clock.GetUtcNow()).ShouldBe([("a", "new")]);
        liveness.Closed("a", "new").ShouldBeFalse("already taken offline by the timeout; no second offline write");
    }

    [Fact]
    public void Closing_the_current_connection_takes_the_agent_offline_at_once()
    {
        var liveness = new AgentLiveness(Timeout);
        liveness.Connected("a", "c1", _clock.GetUtcNow());
        liveness.Connected("b", "c2", _clock.GetUtcNow());
        liveness.Closed("a", "c1").ShouldBeTrue();
        liveness.IsOnline("a", _clock.GetUtcNow()).ShouldBeFalse();
        liveness.IsOnline("b", _clock.GetUtcNow()).ShouldBeTrue("other agents are unaffected");
    }

    /// <summary>
    /// A seeded random walk over connect, heartbeat, silence, close, crash and replacement for a few agents;
    /// after every step the component's answer equals an independent model of the truth: an agent is online
    /// exactly when its newest socket is still open and has been heard within the timeout.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(42)]
    [InlineData(2026)]
    public void Randomized_sequences_always_report_the_truth(int seed)
    {
        var random = new Random(seed);
        var liveness = new AgentLiveness(Timeout);
        string[] agents = ["a", "b", "c"];
        var sockets = new List<Socket>();
        var next = 0;

        for (var step = 0; step < 3000; step++)
        {
            var agent = agents[random.Next(agents.Length)];
            var open = sockets.Where(s => s.Agent == agent && s.Open).ToList();
            var talking = open.Where(s => !s.Crashed).ToList();
            var now = _clock.GetUtcNow();
            switch (random.Next(7))
            {
                case 0: // connect, replacing whatever is current
                    var socket = new Socket(agent, $"conn-{next++}", now);
                    sockets.Add(socket);
                    liveness.Connected(agent, socket.Id, now);
                    break;
                case 1 or 2: // a frame on one of the agent's live sockets (maybe a stale one)
                    if (talking.Count == 0) break;
                    var s1 = talking[random.Next(talking.Count)];
                    if (liveness.Heard(agent, s1.Id, now)) s1.LastHeard = now;
                    else s1.Open = false; // the hub closes a stale socket
                    break;
                case 3: // the socket ends: a polite close, or the hub notices a crashed peer's dead TCP
                    if (open.Count == 0) break;
                    var s2 = open[random.Next(open.Count)];
                    s2.Open = false;
                    liveness.Closed(agent, s2.Id);
                    break;
                case 4: // crash: the peer silently stops talking; nothing is reported yet
                    if (talking.Count == 0) break;
                    talking[random.Next(talking.Count)].Crashed = true;
                    break;
                case 5: // the periodic check closes silent connections
                    foreach (var (a, id) in liveness.TakeTimedOut(now))
                    {
                        var timedOut = sockets.Single(s => s.Id == id);
                        timedOut.Agent.ShouldBe(a);
                        (now - timedOut.LastHeard).ShouldBeGreaterThan(Timeout, "only silent connections are closed");
                        timedOut.Open = false;
                    }
                    break;
                case 6: // time passes
                    _clock.Advance(TimeSpan.FromSeconds(random.Next(0, 25)));
                    break;
            }

            var at = _clock.GetUtcNow();
            foreach (var a in agents)
            {
                var newest = sockets.LastOrDefault(s => s.Agent == a);
                var truth = newest is { Open: true } && at - newest.LastHeard <= Timeout;
                liveness.IsOnline(a, at).ShouldBe(truth, $"seed {seed}, step {step}, agent {a}");
            }
        }
    }

    private sealed class Socket(string agent, string id, DateTimeOffset connectedAt)
    {
        public string Agent { get; } = agent;
        public string Id { get; } = id;
        public DateTimeOffset LastHeard { get; set; } = connectedAt;
        public bool Open { get; set; } = true;
        public bool Crashed { get; set; }
    }
}
