using System.Diagnostics;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The SQLite database holds the token signing key: no other local account (the embedded agent's sessions run as
/// such accounts and pass through the data folder) may read it, however the data folder was made.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SqliteFileProtectionTests : IDisposable
{
    private const UnixFileMode GroupOrOthers =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    // Like ./run.sh's ./data under umask 022 (0755): searchable and listable by every account.
    private readonly string _data = Directory.CreateTempSubdirectory("streamspace-sqlite-modes-").FullName;

    public SqliteFileProtectionTests() =>
        File.SetUnixFileMode(_data, File.GetUnixFileMode(_data) | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

    public void Dispose()
    {
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { }
    }

    private async Task StartAndStopAsync(string database)
    {
        await using var app = StreamSpaceApp.Build(ControlPlaneFixture.StandaloneArgs(_data, embeddedAgent: false, [$"--StreamSpace:Database=sqlite:{database}"]));
        await app.StartAsync(TestContext.Current.CancellationToken);
        // While it runs: the database and its WAL/shared-memory files are the control plane's alone.
        foreach (var file in Directory.EnumerateFiles(_data, Path.GetFileName(database) + "*"))
            (File.GetUnixFileMode(file) & GroupOrOthers).ShouldBe((UnixFileMode)0, $"{file} is mode {Convert.ToString((int)File.GetUnixFileMode(file), 8)}");
        await app.StopAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Exit code of <c>cat FILE</c> run as nobody.</summary>
    private static async Task<int> CatAsNobodyAsync(string file)
    {
        var psi = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", "cat", file }) psi.ArgumentList.Add(arg);
        using var cat = Process.Start(psi)!;
        await cat.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await cat.WaitForExitAsync(TestContext.Current.CancellationToken);
        return cat.ExitCode;
    }

    [Fact]
    public async Task A_new_database_is_created_readable_by_the_control_plane_only()
    {
        var database = Path.Combine(_data, "streamspace.db");
        await StartAndStopAsync(database);
        (File.GetUnixFileMode(database) & GroupOrOthers).ShouldBe((UnixFileMode)0);
        new FileInfo(database).Length.ShouldBeGreaterThan(0); // it is the real database, migrated
        (await CatAsNobodyAsync(database)).ShouldNotBe(0, "another account read the database");
    }

    [Fact]
    public async Task A_database_left_readable_by_others_is_tightened_at_start()
    {
        var database = Path.Combine(_data, "streamspace.db");
        await StartAndStopAsync(database);
        File.SetUnixFileMode(database, File.GetUnixFileMode(database) | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        (await CatAsNobodyAsync(database)).ShouldBe(0, "the check itself: nobody can read a 0644 database here");

        await StartAndStopAsync(database);
        (File.GetUnixFileMode(database) & GroupOrOthers).ShouldBe((UnixFileMode)0);
        (await CatAsNobodyAsync(database)).ShouldNotBe(0);
    }

    [Fact]
    public void Companion_files_are_tightened_and_a_missing_database_is_created_owner_only()
    {
        var database = Path.Combine(_data, "other.db");
        File.WriteAllText(database + "-wal", "");
        File.SetUnixFileMode(database + "-wal", (UnixFileMode)0b110_100_100);
        var tightened = SqliteFileProtection.Apply(database);
        tightened.ShouldBe([(database + "-wal", (UnixFileMode)0b110_100_100, (UnixFileMode)0b110_000_000)]);
        File.GetUnixFileMode(database).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        SqliteFileProtection.Apply(database).ShouldBeEmpty();
    }
}
