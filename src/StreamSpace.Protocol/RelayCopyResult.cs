namespace StreamSpace.Protocol;

/// <summary>How one direction of a stream relay ended. Expected endings are values, not exceptions (YARP's StreamCopyResult).</summary>
public enum RelayCopyResult
{
    /// <summary>The input ended cleanly: a WebSocket close frame, or end of stream.</summary>
    Success,
    /// <summary>Reading from the input failed (connection reset, protocol error).</summary>
    InputError,
    /// <summary>Writing to the output failed.</summary>
    OutputError,
    /// <summary>The copy was cancelled (the other direction ended, the viewer went away, shutdown).</summary>
    Canceled,
}
