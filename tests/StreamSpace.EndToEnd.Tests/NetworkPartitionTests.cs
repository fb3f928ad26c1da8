using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// An agent on its own network host (a namespace we create) whose traffic is black-holed with iptables:
/// no FIN, no RST, just silence — the case where only heartbeats can tell.
/// </summary>
public sealed class NetworkPartitionTests
{
    private const int HeartbeatSeconds = 2;

    [Fact]
    public async Task Agent_behind_a_dead_network_goes_offline_within_three_heartbeats_and_returns_by_itself()
    {
        await using var netns = await NetworkNamespace.CreateAsync();
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, HeartbeatSeconds, extraListenAddress: netns.HostAddress);
        var admin = await platform.AdminAsync();
        await platform.AddAgentAsync("agent-netns", "simulated", networkNamespace: netns);
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-netns") == "online", TimeSpan.FromSeconds(15), "agent online across the link");

        await netns.DropTrafficAsync();
        var offline = await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-netns") == "offline", TimeSpan.FromSeconds(30), "agent offline after partition");
        offline.ShouldBeLessThan(TimeSpan.FromSeconds(3 * HeartbeatSeconds + 1));
        (await platform.AgentStatusInDbAsync("agent-netns")).ShouldBe("offline");

        await netns.RestoreTrafficAsync();
        await Platform.WaitUntilAsync(async () => await admin.AgentStatusAsync("agent-netns") == "online", TimeSpan.FromSeconds(60), "agent back by itself after the partition heals");
        (await platform.AgentStatusInDbAsync("agent-netns")).ShouldBe("online");
    }
}
