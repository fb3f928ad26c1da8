namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>Where the built executables and the test artifacts are.</summary>
public static class Paths
{
    public static string RepoRoot { get; } = FindRoot();

    public static string ControlPlaneExe => Exe("StreamSpace.ControlPlane");
    public static string AgentExe => Exe("StreamSpace.Agent");

    public static string Artifacts
    {
        get
        {
            var dir = Path.Combine(RepoRoot, "artifacts", "test-results", "e2e");
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    /// <summary>A fresh folder for one test's data; the name marks it so ./test.sh can clean leftovers.</summary>
    public static string NewTempFolder(string purpose)
    {
        var dir = Path.Combine(Path.GetTempPath(), "streamspace-tests", $"{purpose}-{Guid.NewGuid():N}"[..(purpose.Length + 13)]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string Exe(string project)
    {
        // The project's own output, not the copy next to the tests: that copy runs with the test
        // project's dependency manifest, which lacks the executable's own dependencies.
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var built = Path.Combine(RepoRoot, "src", project, "bin", configuration, "net10.0", project);
        if (File.Exists(built)) return built;
        throw new FileNotFoundException($"{project} executable not found; build the solution first", built);
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "StreamSpace.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("repository root (StreamSpace.slnx) not found above " + AppContext.BaseDirectory);
    }
}
