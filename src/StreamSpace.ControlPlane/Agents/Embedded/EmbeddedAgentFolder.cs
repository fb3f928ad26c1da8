using StreamSpace.Agent.Hosting;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Agents.Embedded;

/// <summary>
/// The embedded agent's state folder, chosen, made and locked (<see cref="StateFolderLock"/>, which also refuses a folder of
/// another agent id) while the control plane is built: before it listens, and before any hosted service reaches the database.
/// A second control plane on the same data folder (a second <c>./run.sh</c>) thus ends with one line and exit code 2 without
/// having answered a request or run a sweep against the first one's database. The lock is held from then on:
/// <see cref="EmbeddedAgentService"/> takes it and hands it to the agent, which releases it when it stops. Disposed with the
/// host (started or not) or when the build fails, this releases a lock nobody took.
/// </summary>
public sealed class EmbeddedAgentFolder : IDisposable
{
    private StateFolderLock? _lock;

    private EmbeddedAgentFolder(AgentOptions settings, string? why, IReadOnlyList<(string Variable, string Instead)> ignoredSettings, StateFolderLock folderLock)
    {
        Settings = settings;
        Why = why;
        IgnoredSettings = ignoredSettings;
        _lock = folderLock;
    }

    /// <summary>Standalone agent settings set for this process that the embedded agent ignores (<see cref="EmbeddedAgentService.IgnoredStandaloneSettings"/>).</summary>
    public IReadOnlyList<(string Variable, string Instead)> IgnoredSettings { get; }

    /// <summary>The agent's session settings (<see cref="EmbeddedAgentService.SessionSettings"/>) with the chosen state folder.</summary>
    public AgentOptions Settings { get; }

    /// <summary>Why the state folder is not the usual one in the data folder, or null when it is.</summary>
    public string? Why { get; }

    /// <summary>
    /// Reads the embedded agent's settings, chooses its state folder and locks it for <see cref="StreamSpaceOptions.EmbeddedAgentId"/>;
    /// <see cref="AgentOptionsException"/> when a setting is wrong, the folder cannot be used, another agent holds it, or it
    /// belongs to another agent id.
    /// </summary>
    public static EmbeddedAgentFolder Claim(StreamSpaceOptions options, IConfiguration configuration)
    {
        var settings = EmbeddedAgentService.SessionSettings(configuration);
        var (state, why) = StateFolderChoice.ForEmbedded(options.DataFolder, settings.StateFolder, Environment.IsPrivilegedProcess, settings.SharedStateRoot);
        settings.StateFolder = state;
        settings.EnsureStateFolder();
        return new EmbeddedAgentFolder(settings, why, EmbeddedAgentService.IgnoredStandaloneSettings(configuration, options),
            StateFolderLock.Acquire(state, options.EmbeddedAgentId));
    }

    /// <summary>The held lock, once: from then on the caller releases it.</summary>
    public StateFolderLock TakeLock() =>
        Interlocked.Exchange(ref _lock, null) ?? throw new InvalidOperationException("The embedded agent's state folder lock was taken already");

    public void Dispose() => Interlocked.Exchange(ref _lock, null)?.Dispose();
}
