namespace StreamSpace.Protocol;

/// <summary>Versions of the agent wire protocol. A peer refuses an envelope whose version it does not support.</summary>
public static class ProtocolVersion
{
    public const int Current = 1;
    public const int MinSupported = 1;

    public static bool IsSupported(int version) => version is >= MinSupported and <= Current;
}
