namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// The session leader: a tiny shell that runs as the session user in its own session/process group (setsid),
/// so everything it starts outlives an agent crash and is signalled as one group. It starts Xvnc, waits until
/// the agent has seen Xvnc accept RFB connections (the agent then creates the <c>launch</c> file), starts the
/// app and records the app's exit code, so an exit is told apart from a crash even across agent restarts.
/// stdin is /dev/null and all output goes to the session's log file, never to a pipe of the agent.
/// </summary>
internal static class SessionLauncher
{
    public const string LogFile = "session.log";
    public const string SocketFile = "vnc.sock";
    public const string XvncPidFile = "xvnc.pid";
    public const string AppPidFile = "app.pid";
    public const string AppExitFile = "app.exit";
    public const string LaunchFile = "launch";

    /// <summary>Positional arguments: $1 session dir, $2 display number, $3 Xvnc path, $4 geometry, $5 app command.</summary>
    public const string Script = """
        dir="$1"; display="$2"; xvnc="$3"; geometry="$4"; command="$5"
        exec </dev/null >>"$dir/session.log" 2>&1
        "$xvnc" ":$display" -rfbunixpath "$dir/vnc.sock" -rfbunixmode 0600 -rfbport -1 -SecurityTypes None \
            -nolisten tcp -geometry "$geometry" -depth 24 -AlwaysShared -NeverShared=0 &
        echo "$!" > "$dir/xvnc.pid"
        while [ ! -e "$dir/launch" ]; do sleep 0.05; done
        /bin/sh -c "$command" &
        echo "$!" > "$dir/app.pid"
        wait "$!"
        echo "$?" > "$dir/app.exit"
        """;
}
