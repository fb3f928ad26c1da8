namespace StreamSpace.Agent.Tests;

/// <summary>A Random whose NextDouble always returns the same value, to pin the jitter.</summary>
internal sealed class FixedRandom(double value) : Random
{
    public override double NextDouble() => value;
    protected override double Sample() => value;
}
