using System.Diagnostics;
using StreamSpace.Agent.Runtimes.Process;

namespace StreamSpace.Agent.Tests.Runtimes;

public sealed class UntrustedFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("untrusted-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_small_regular_file_is_read()
    {
        var path = Path.Combine(_dir, "app.exit");
        File.WriteAllText(path, "3\n");
        UntrustedFile.ReadHead(path).ShouldBe("3\n");
        UntrustedFile.ReadHead(Path.Combine(_dir, "missing")).ShouldBeNull();
    }

    [Fact]
    public void A_link_is_never_followed()
    {
        var secret = Path.Combine(_dir, "secret");
        File.WriteAllText(secret, "TOPSECRET");
        var link = Path.Combine(_dir, "session.log");
        File.CreateSymbolicLink(link, secret);
        UntrustedFile.ReadHead(link).ShouldBeNull();
        UntrustedFile.ReadTail(link).ShouldBeNull();
        File.CreateSymbolicLink(Path.Combine(_dir, "zero"), "/dev/zero");
        UntrustedFile.ReadHead(Path.Combine(_dir, "zero")).ShouldBeNull();
    }

    /// <summary>
    /// The link refusal above runs only on this machine's x86-64. The flag's value per architecture is the kernel's
    /// (include/uapi/asm-generic/fcntl.h and arch/{arm,arm64,powerpc}/include/uapi/asm/fcntl.h): the x86-64 value on
    /// arm64 is O_LARGEFILE, which would follow every link.
    /// </summary>
    [Theory]
    [InlineData(System.Runtime.InteropServices.Architecture.X64, 0x20000)]
    [InlineData(System.Runtime.InteropServices.Architecture.S390x, 0x20000)]
    [InlineData(System.Runtime.InteropServices.Architecture.RiscV64, 0x20000)]
    [InlineData(System.Runtime.InteropServices.Architecture.LoongArch64, 0x20000)]
    [InlineData(System.Runtime.InteropServices.Architecture.Arm64, 0x8000)]
    [InlineData(System.Runtime.InteropServices.Architecture.Arm, 0x8000)]
    [InlineData(System.Runtime.InteropServices.Architecture.Ppc64le, 0x8000)]
    public void No_follow_is_the_kernels_value_for_each_architecture(System.Runtime.InteropServices.Architecture architecture, int expected) =>
        Posix.NoFollowFlag(architecture).ShouldBe(expected);

    [Fact]
    public async Task A_fifo_nobody_writes_returns_at_once()
    {
        var fifo = Path.Combine(_dir, "app.pid");
        using (var mkfifo = Process.Start("mkfifo", [fifo])) await mkfifo.WaitForExitAsync(TestContext.Current.CancellationToken);
        var read = Task.Run(() => UntrustedFile.ReadHead(fifo), TestContext.Current.CancellationToken);
        (await read.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken)).ShouldBeNullOrEmpty();
    }

    [Fact]
    public void A_huge_log_is_read_only_at_its_end()
    {
        var log = Path.Combine(_dir, "session.log");
        using (var file = File.Create(log))
        {
            file.SetLength(256L * 1024 * 1024); // sparse: 256 MiB the agent must not load
            file.Seek(0, SeekOrigin.End);
            file.Write("last line\n"u8);
        }
        var tail = UntrustedFile.ReadTail(log, maxBytes: 1024)!;
        tail.Length.ShouldBe(1024);
        tail.ShouldEndWith("last line\n");
    }
}
