namespace StreamSpace.Agent.Runtimes.Process;

/// <summary>
/// The session leader: a tiny shell that runs as the session user in its own session/process group (setsid),
/// so everything it starts outlives an agent crash and is signalled as one group. It starts Xvnc, waits until
/// the agent has seen Xvnc accept RFB connections (the agent then creates the <c>launch</c> file), starts the
/// app and records the app's exit code, so an exit is told apart from a crash even across agent restarts.
/// Xvnc requires the session's X cookie (<c>-auth "$XAUTHORITY"</c>, see <see cref="XAuthority"/>).
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

    /// <summary>
    /// Seconds between two looks for the launch file. The agent signals the leader (SIGUSR1) right after making the file,
    /// which ends the wait at once: the looks are the fallback.
    /// </summary>
    public const double LaunchPollSeconds = 0.05;

    /// <summary>The signal that tells the leader the launch file is there.</summary>
    public const int LaunchSignal = 10; // SIGUSR1

    /// <summary>
    /// Positional arguments: $1 session dir, $2 display number, $3 Xvnc path, $4 geometry, $5 app command,
    /// $6 how many polls to wait for the launch file, $7 the VNC unix socket path, $8 the window manager's command line
    /// (empty: none; it starts just before the app, in the same process group). If the agent dies (or gives up) before it
    /// says launch, the leader stops Xvnc and exits instead of waiting forever with nobody knowing about it. The agent's
    /// SIGUSR1 after it made the launch file interrupts the <c>wait</c> for the current look's sleep (a trapped signal
    /// ends <c>wait</c> at once; the leader then ends that sleep, so nothing of the wait outlives it). The trap is set
    /// first, long before the agent can send it (only once Xvnc answers). The signal can also land after the leader saw
    /// the file by itself and started the app: the leader then waits for the app again as long as it runs, so the signal
    /// never passes for the app's exit. (A trap, not an ignored signal: an ignored one would stay ignored in the app and
    /// every program it starts.)
    /// </summary>
    public const string Script = """
        trap ':' USR1
        dir="$1"; display="$2"; xvnc="$3"; geometry="$4"; command="$5"; polls="$6"; sock="$7"; wm="$8"
        exec </dev/null >>"$dir/session.log" 2>&1
        "$xvnc" ":$display" -auth "$XAUTHORITY" -rfbunixpath "$sock" -rfbunixmode 0600 -rfbport -1 -SecurityTypes None \
            -nolisten tcp -geometry "$geometry" -depth 24 -AlwaysShared -NeverShared=0 &
        xvnc_pid="$!"
        echo "$xvnc_pid" > "$dir/xvnc.pid"
        while [ ! -e "$dir/launch" ]; do
            polls=$((polls - 1))
            if [ "$polls" -le 0 ] || [ ! -d "$dir" ]; then kill "$xvnc_pid"; exit 1; fi
            sleep 0.05 & sleeper="$!"
            wait "$sleeper" && sleeper=""
        done
        [ -z "$sleeper" ] || { kill "$sleeper"; wait "$sleeper"; } 2>/dev/null
        if [ -n "$wm" ]; then /bin/sh -c "exec $wm" & fi
        /bin/sh -c "$command" &
        app="$!"
        echo "$app" > "$dir/app.pid"
        while wait "$app"; code="$?"; kill -0 "$app" 2>/dev/null; do :; done
        echo "$code" > "$dir/app.exit"
        """;
}
