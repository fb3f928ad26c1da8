using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>The Kestrel transport settings the relay's throughput depends on (RelayMemoryPool, read-ahead limit, inline scheduling).</summary>
public sealed class RelayTransportTuningTests(StreamingSqliteControlPlane cp) : IClassFixture<StreamingSqliteControlPlane>
{
    [Fact]
    public void The_running_control_plane_gives_Kestrel_64_KiB_receive_blocks_a_128_KiB_read_ahead_and_inline_scheduling()
    {
        var factory = cp.App.Services.GetRequiredService<IMemoryPoolFactory<byte>>();
        factory.ShouldBeOfType<RelayMemoryPool.Factory>();
        using var pool = factory.Create(new MemoryPoolOptions());
        using var block = pool.Rent(2048); // the size hint Kestrel's socket receive loop asks for
        block.Memory.Length.ShouldBe(64 * 1024);
        var transport = cp.App.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value;
        transport.MaxReadBufferSize.ShouldBe(128 * 1024);
        transport.UnsafePreferInlineScheduling.ShouldBeTrue();
    }

    [Fact]
    public void Pool_reuses_returned_blocks_keeps_at_most_its_retention_limit_and_refuses_oversized_rents()
    {
        using var pool = new RelayMemoryPool();
        var first = pool.Rent();
        var array = ArrayOf(first);
        first.Dispose();
        using (var again = pool.Rent()) ArrayOf(again).ShouldBeSameAs(array);

        var many = Enumerable.Range(0, RelayMemoryPool.RetainedBlocks + 50).Select(_ => pool.Rent()).ToList();
        var arrays = many.Select(ArrayOf).ToHashSet();
        foreach (var block in many) block.Dispose();
        var reused = Enumerable.Range(0, RelayMemoryPool.RetainedBlocks + 50).Select(_ => pool.Rent()).Count(b => arrays.Contains(ArrayOf(b)));
        reused.ShouldBe(RelayMemoryPool.RetainedBlocks);

        Should.Throw<ArgumentOutOfRangeException>(() => pool.Rent(RelayMemoryPool.BlockSize + 1));
    }

    private static byte[] ArrayOf(IMemoryOwner<byte> block) =>
        MemoryMarshal.TryGetArray<byte>(block.Memory, out var segment) ? segment.Array! : throw new InvalidOperationException("not array-backed");
}
