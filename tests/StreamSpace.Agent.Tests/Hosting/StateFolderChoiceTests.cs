using StreamSpace.Agent.Hosting;

namespace StreamSpace.Agent.Tests.Hosting;

/// <summary>
/// Where the embedded agent keeps its state when the operator did not say: real folders with real modes (a checkout
/// under a mode-700 folder, as /root is), no process started.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class StateFolderChoiceTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("streamspace-state-choice-").FullName;
    private readonly string _closedData;
    private readonly string _openData;
    private readonly string _shared;

    public StateFolderChoiceTests()
    {
        File.SetUnixFileMode(_root, (UnixFileMode)Convert.ToInt32("755", 8));
        var closed = Directory.CreateDirectory(Path.Combine(_root, "home-700")).FullName;
        File.SetUnixFileMode(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _closedData = Directory.CreateDirectory(Path.Combine(closed, "checkout", "data")).FullName;
        _openData = Directory.CreateDirectory(Path.Combine(_root, "open", "data")).FullName;
        _shared = Directory.CreateDirectory(Path.Combine(_root, "shared")).FullName;
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static void PutSession(string stateFolder) => Directory.CreateDirectory(Path.Combine(stateFolder, "sessions", "alice-xterm-abcdef"));

    [Fact]
    public void As_root_a_data_folder_the_session_accounts_cannot_enter_sends_the_state_to_a_folder_of_its_own()
    {
        var (folder, why) = StateFolderChoice.ForEmbedded(_closedData, configured: null, root: true, _shared);
        Path.GetDirectoryName(folder).ShouldBe(_shared);
        Path.GetFileName(folder).ShouldStartWith("agent-local-");
        why.ShouldNotBeNull().ShouldContain($"{Path.Combine(_root, "home-700")} (mode 700)");
        // Deterministic: the next start of the same control plane picks the same folder.
        StateFolderChoice.ForEmbedded(_closedData, null, root: true, _shared).Folder.ShouldBe(folder);
        // Another data folder gets another one.
        StateFolderChoice.ForEmbedded(Path.Combine(_closedData, "other"), null, root: true, _shared).Folder.ShouldNotBe(folder);
    }

    [Fact]
    public void The_data_folder_is_used_when_the_sessions_can_reach_it_or_the_agent_is_not_root()
    {
        StateFolderChoice.ForEmbedded(_openData, null, root: true, _shared).ShouldBe((Path.Combine(_openData, "agent-local"), null));
        // Not root: sessions run as the agent's own account, which reaches its own folders.
        StateFolderChoice.ForEmbedded(_closedData, null, root: false, _shared).ShouldBe((Path.Combine(_closedData, "agent-local"), null));
    }

    [Fact]
    public void A_configured_state_folder_is_used_as_given()
    {
        var configured = Path.Combine(_closedData, "mine");
        StateFolderChoice.ForEmbedded(_closedData, configured, root: true, _shared).ShouldBe((configured, null));
    }

    [Fact]
    public void Sessions_in_the_data_folder_stay_there_even_once_the_accounts_cannot_reach_it()
    {
        // They started when the folder was reachable and someone closed it since: moving would orphan them, so the state
        // stays, and the agent's own check names the folder to open.
        PutSession(Path.Combine(_closedData, "agent-local"));
        StateFolderChoice.ForEmbedded(_closedData, null, root: true, _shared).ShouldBe((Path.Combine(_closedData, "agent-local"), null));
    }

    [Fact]
    public void Sessions_in_the_folder_of_its_own_are_found_there_after_the_data_folder_was_opened()
    {
        var (moved, _) = StateFolderChoice.ForEmbedded(_closedData, null, root: true, _shared);
        PutSession(moved);
        File.SetUnixFileMode(Path.Combine(_root, "home-700"), (UnixFileMode)Convert.ToInt32("755", 8));
        var (folder, why) = StateFolderChoice.ForEmbedded(_closedData, null, root: true, _shared);
        folder.ShouldBe(moved);
        why.ShouldNotBeNull().ShouldContain("earlier start");
    }

    [Fact]
    public void A_standalone_agents_default_folder_moves_the_same_way_under_its_own_name()
    {
        var usual = Path.Combine(_closedData, "agent-worker-1");
        var (folder, why) = StateFolderChoice.Choose(usual, configured: null, root: true, _shared);
        Path.GetDirectoryName(folder).ShouldBe(_shared);
        Path.GetFileName(folder).ShouldStartWith("agent-worker-1-");
        why.ShouldNotBeNull().ShouldContain($"to reach {usual}");
    }
}
