namespace StreamSpace.ControlPlane.Web.Components.Shared;

/// <summary>The session states of design §5, as the UI groups them for actions.</summary>
public static class SessionStates
{
    public static readonly string[] All = ["pending", "starting", "running", "hibernating", "hibernated", "waking", "terminating", "terminated", "failed"];

    public static bool CanConnect(string state) => state == "running";
    public static bool CanHibernate(string state) => state == "running";
    public static bool CanWake(string state) => state == "hibernated";
    /// <summary>
    /// Live states can be terminated. Not one already on its way out, nor an ended one (terminated, failed): the API
    /// answers 202 and leaves it as it is, so the button would do nothing.
    /// </summary>
    public static bool CanTerminate(string state) => state is not ("terminating" or "terminated" or "failed");
    /// <summary>Gone from the user's list: a terminated session has nothing left to do.</summary>
    public static bool IsGone(string state) => state == "terminated";
}
