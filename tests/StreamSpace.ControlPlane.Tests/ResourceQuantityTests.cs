using StreamSpace.Protocol;
using StreamSpace.ControlPlane.Sessions;

namespace StreamSpace.ControlPlane.Tests;

public sealed class ResourceQuantityTests
{
    [Theory]
    [InlineData("250m", 250)]
    [InlineData("1", 1000)]
    [InlineData("1.5", 1500)]
    [InlineData("0.5", 500)]
    [InlineData("2000m", 2000)]
    [InlineData("64", 64000)]
    [InlineData("0.001", 1)]
    public void Valid_cpu_quantities_parse_to_millicores(string text, long expected)
    {
        ResourceQuantity.TryParseCpu(text, out var millis, out var error).ShouldBeTrue(error);
        millis.ShouldBe(expected);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("0m")]
    [InlineData("0.0")]
    [InlineData("-1")]
    [InlineData("-250m")]
    [InlineData("65")]
    [InlineData("64001m")]
    [InlineData("1e3")]
    [InlineData("1.5m")]
    [InlineData("0.0001")]
    [InlineData("250 m")]
    [InlineData("1Gi")]
    [InlineData("1\n")]
    [InlineData("99999999999999999999999999999")]
    [InlineData("1,5")]
    [InlineData(".5")]
    public void Invalid_cpu_quantities_are_refused_with_a_reason(string? text)
    {
        ResourceQuantity.TryParseCpu(text, out _, out var error).ShouldBeFalse();
        error.ShouldNotBeNullOrWhiteSpace();
    }

    [Theory]
    [InlineData("512Mi", 512L * 1024 * 1024)]
    [InlineData("2Gi", 2L * 1024 * 1024 * 1024)]
    [InlineData("1G", 1_000_000_000L)]
    [InlineData("1000M", 1_000_000_000L)]
    [InlineData("1073741824", 1073741824L)]
    [InlineData("128Ki", 128L * 1024)]
    [InlineData("1.5Gi", 3L * 512 * 1024 * 1024)]
    [InlineData("256Gi", 256L * 1024 * 1024 * 1024)]
    [InlineData("100k", 100_000L)]
    public void Valid_memory_quantities_parse_to_bytes(string text, long expected)
    {
        ResourceQuantity.TryParseMemory(text, out var bytes, out var error).ShouldBeTrue(error);
        bytes.ShouldBe(expected);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("lots")]
    [InlineData("0")]
    [InlineData("0Mi")]
    [InlineData("-512Mi")]
    [InlineData("257Gi")]
    [InlineData("1Ti")]
    [InlineData("300G")]
    [InlineData("512MB")]
    [InlineData("512mi")]
    [InlineData("Mi")]
    [InlineData("1e9")]
    [InlineData("99999999999999999999999999Ti")]
    [InlineData("512Mi ")]
    public void Invalid_memory_quantities_are_refused_with_a_reason(string? text)
    {
        ResourceQuantity.TryParseMemory(text, out _, out var error).ShouldBeFalse();
        error.ShouldNotBeNullOrWhiteSpace();
    }
}
