namespace StreamSpace.Agent.Streaming;

/// <summary>How a stream bridge ended (YARP's StreamCopyResult discipline: expected endings are values).</summary>
public enum StreamBridgeResult
{
    /// <summary>One side ended cleanly (the viewer or control plane closed the data socket, or the VNC server closed).</summary>
    Success,
    /// <summary>Reading failed: the data socket or the VNC connection broke while being read.</summary>
    InputError,
    /// <summary>Writing failed: the data socket or the VNC connection broke while being written.</summary>
    OutputError,
    /// <summary>The agent cancelled the bridge (shutdown).</summary>
    Canceled,
    /// <summary>The agent ended the stream with a reason for the viewer (its session is being hibernated or stopped).</summary>
    ClosedByAgent,
}
