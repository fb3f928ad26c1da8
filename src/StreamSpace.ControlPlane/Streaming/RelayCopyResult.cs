namespace StreamSpace.ControlPlane.Streaming;

/// <summary>How one direction of a relay ended. Expected endings are values, not exceptions (YARP's StreamCopyResult).</summary>
internal enum RelayCopyResult
{
    /// <summary>The input side closed the WebSocket with a close frame.</summary>
    Success,
    /// <summary>Reading from the input side failed (connection reset, protocol error).</summary>
    InputError,
    /// <summary>Writing to the output side failed.</summary>
    OutputError,
    /// <summary>The relay was cancelled (the other direction ended, the viewer went away, shutdown).</summary>
    Canceled,
}
