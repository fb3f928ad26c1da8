namespace StreamSpace.EndToEnd.Tests.Infrastructure;

/// <summary>A temporary folder, removed with everything in it when disposed.</summary>
internal sealed class ScratchFolder(string prefix) : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    /// <summary>A state folder that cannot be made: a file stands where its parent folder should be.</summary>
    public async Task<string> UnusableStateFolderAsync(CancellationToken ct)
    {
        var notAFolder = System.IO.Path.Combine(Path, "notadir");
        await File.WriteAllTextAsync(notAFolder, "a file", ct);
        return System.IO.Path.Combine(notAFolder, "state");
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
