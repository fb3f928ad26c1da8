using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>
/// Kestrel's connection memory pool with 64 KiB blocks instead of its default 4 KiB ones. Kestrel's socket
/// transport receives into one pool block per <c>recv</c>, so with 4 KiB blocks every 64 KiB framebuffer
/// update crossed the relay as 16 receive syscalls, 16 pipe flushes and 16 reader wake-ups, on both the
/// viewer's and the agent's leg (measured with <c>strace -c</c> on bench/stream.sh: ~85% of the control
/// plane's receive syscalls). The pool replaces the default through <see cref="IMemoryPoolFactory{T}"/>,
/// the extension point Kestrel takes from DI since .NET 10.
/// </summary>
/// <remarks>
/// Cost: a connection with data in flight holds 64 KiB per pipe segment instead of 4 KiB. Idle connections
/// hold none (Kestrel waits for data with a zero-byte receive before renting). Blocks are pinned
/// (POH) like Kestrel's own, and at most <see cref="RetainedBlocks"/> free blocks are kept; the rest go to the GC.
/// </remarks>
internal sealed class RelayMemoryPool : MemoryPool<byte>
{
    /// <summary>64 KiB: the relay's frame size (the biggest message noVNC and the agent send), so one receive moves one frame.</summary>
    public const int BlockSize = 64 * 1024;

    /// <summary>Free blocks kept for reuse per pool (16 MiB): enough for ~100 busy streams' in-flight segments.</summary>
    public const int RetainedBlocks = 256;

    private readonly ConcurrentQueue<Block> _free = new();
    private int _freeCount;

    public override int MaxBufferSize => BlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (_free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _freeCount);
            return block;
        }
        return new Block(this);
    }

    private void Return(Block block)
    {
        if (Interlocked.Increment(ref _freeCount) <= RetainedBlocks)
            _free.Enqueue(block);
        else
            Interlocked.Decrement(ref _freeCount);
    }

    protected override void Dispose(bool disposing)
    {
        _free.Clear();
    }

    private sealed class Block(RelayMemoryPool pool) : IMemoryOwner<byte>
    {
        private readonly byte[] _array = GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);

        public Memory<byte> Memory => _array;

        public void Dispose() => pool.Return(this);
    }

    /// <summary>Registered in DI; Kestrel asks it for one pool per transport.</summary>
    internal sealed class Factory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new RelayMemoryPool();
    }
}
