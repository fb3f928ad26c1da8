namespace StreamSpace.Protocol;
public static class ProtocolVersion { public const int Current = 1; }
