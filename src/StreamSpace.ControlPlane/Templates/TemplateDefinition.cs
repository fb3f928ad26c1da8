using System.Text;
using System.Text.RegularExpressions;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>
/// A template (design §8) exactly as written in <c>templates/*.yaml</c>, sent to the API (camelCase
/// JSON or YAML) and stored as JSON in <c>templates.definition</c>. Every property is nullable so that
/// a missing field is reported by <see cref="Validate"/> by name instead of failing deserialization.
/// </summary>
public partial class TemplateDefinition
{
    public string? Name { get; set; }
    public string? DisplayName { get; set; }
    public string? Description { get; set; }
    public string? Category { get; set; }
    public string? Icon { get; set; }
    public TemplateResources? DefaultResources { get; set; }
    public TemplateStream? Stream { get; set; }
    public TemplateHome? Home { get; set; }
    public Dictionary<string, string>? Env { get; set; }
    /// <summary>
    /// Minutes without viewer input after which this template's running sessions are handled as idle
    /// (<c>StreamSpace__IdleAction</c>); 0 = never; absent = <c>StreamSpace__IdleTimeout</c>.
    /// </summary>
    public int? IdleTimeoutMinutes { get; set; }
    public ProcessRuntime? Process { get; set; }
    public DockerRuntime? Docker { get; set; }
    public KubernetesRuntime? Kubernetes { get; set; }

    public const string DefaultCategory = "Other";
    public const string DefaultHomeMountPath = "/home/user";
    public const int DefaultVncPort = 5900;
    public const int MaxIdleTimeoutMinutes = 525_600;

    [GeneratedRegex(@"^[a-z0-9][a-z0-9-]{0,62}\z")]
    public static partial Regex NamePattern();

    /// <summary>
    /// Most characters of free text (every field of <see cref="Texts"/> plus the env names) one template may hold. A
    /// session's start command carries them to the agent in one message of at most 1 MiB, where JSON may write a
    /// character as six (<c>\u003C</c>); a larger template made every start on an agent fail its connection, over and
    /// over until the command expired, starving that agent's other commands. The sum also stops a YAML body whose
    /// aliases repeat one long string thousands of times before anything walks the copies.
    /// </summary>
    public const int MaxTextLength = 64 * 1024;

    /// <summary>
    /// Most bytes of one string a process agent hands to exec, its terminating NUL included: Linux's MAX_ARG_STRLEN
    /// (32 pages of 4 KiB). Each env entry becomes one <c>NAME=VALUE</c> argument and environment string, the process
    /// command one argument of <c>sh -c</c>; one longer than this fails every start with E2BIG ("Argument list too
    /// long"). <see cref="MaxTextLength"/> already bounds all of them together to 192 KiB of UTF-8 (three bytes per
    /// character at most), far below the ~2 MiB (a quarter of the usual 8 MiB stack) exec allows for everything at once.
    /// </summary>
    public const int MaxExecStringBytes = 128 * 1024;

    /// <summary>Checks every rule of the catalog; the returned <see cref="Validation"/> names each bad field.</summary>
    public Validation Validate()
    {
        var v = new Validation();
        long total = (Env?.Keys.Sum(k => (long)k.Length) ?? 0) + Texts().Sum(t => (long)(t.Text?.Length ?? 0));
        if (total > MaxTextLength)
            return v.Add("template", $"holds {total} characters of text; at most {MaxTextLength} (command, env, description and the rest together)");
        if (string.IsNullOrEmpty(Name)) v.Add("name", "is required");
        else if (!NamePattern().IsMatch(Name)) v.Add("name", "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit");
        if (string.IsNullOrWhiteSpace(DisplayName)) v.Add("displayName", "is required");
        else if (DisplayName.Length > 200) v.Add("displayName", "must be at most 200 characters");
        if (Category is { Length: > 100 }) v.Add("category", "must be at most 100 characters");

        if (DefaultResources is null) v.Add("defaultResources", "is required ({cpu, memory})");
        else
        {
            if (!ResourceQuantity.TryParseCpu(DefaultResources.Cpu, out _, out var cpuError)) v.Add("defaultResources.cpu", cpuError);
            if (!ResourceQuantity.TryParseMemory(DefaultResources.Memory, out _, out var memoryError)) v.Add("defaultResources.memory", memoryError);
        }

        if (Stream is null) v.Add("stream", "is required ({protocol: vnc, port})");
        else
        {
            if (Stream.Protocol != "vnc") v.Add("stream.protocol", "must be 'vnc'");
            if (Stream.Port is < 1 or > 65535) v.Add("stream.port", "must be between 1 and 65535");
        }
        if (Home?.MountPath is { } mount && !mount.StartsWith('/')) v.Add("home.mountPath", "must be an absolute path");
        if (IdleTimeoutMinutes is < 0 or > MaxIdleTimeoutMinutes)
            v.Add("idleTimeoutMinutes", $"must be between 0 (never idle out) and {MaxIdleTimeoutMinutes} (a year); leave it out for the control plane's IdleTimeout");
        if (Env is not null)
        {
            foreach (var key in Env.Keys)
            {
                if (!IsEnvName(key)) { v.Add("env", $"'{key}' is not a valid environment variable name"); break; }
            }
        }

        foreach (var (field, text) in Texts()) v.RequireStorable(field, text);
        foreach (var (key, value) in Env ?? [])
        {
            var bytes = Encoding.UTF8.GetByteCount(key) + 1 + Encoding.UTF8.GetByteCount(value ?? "");
            if (bytes + 1 > MaxExecStringBytes)
                v.Add($"env.{key}", $"'{key}=...' is {bytes} bytes of UTF-8; Linux passes at most {MaxExecStringBytes - 1} bytes in one environment string (MAX_ARG_STRLEN), so every session would fail to start");
        }
        if (Process?.Command is { } command && Encoding.UTF8.GetByteCount(command) is var commandBytes && commandBytes + 1 > MaxExecStringBytes)
            v.Add("process.command", $"is {commandBytes} bytes of UTF-8; Linux passes at most {MaxExecStringBytes - 1} bytes in one program argument (MAX_ARG_STRLEN), so every session would fail to start");

        if (Process is null && Docker is null && Kubernetes is null)
            v.Add("process", "at least one runtime section (process, docker, kubernetes) is required");
        if (Process is not null && string.IsNullOrWhiteSpace(Process.Command)) v.Add("process.command", "is required when the process section is present");
        if (Docker is not null && string.IsNullOrWhiteSpace(Docker.Image)) v.Add("docker.image", "is required when the docker section is present");
        if (Kubernetes is not null && string.IsNullOrWhiteSpace(Kubernetes.Image)) v.Add("kubernetes.image", "is required when the kubernetes section is present");
        return v;
    }

    /// <summary>The free text of the template by field name: stored (display name and category also as columns) and handed to agents.</summary>
    private IEnumerable<(string Field, string? Text)> Texts()
    {
        yield return ("displayName", DisplayName);
        yield return ("description", Description);
        yield return ("category", Category);
        yield return ("icon", Icon);
        yield return ("home.mountPath", Home?.MountPath);
        foreach (var (key, value) in Env ?? []) yield return ($"env.{key}", value);
        yield return ("process.command", Process?.Command);
        yield return ("docker.image", Docker?.Image);
        yield return ("docker.command", Docker?.Command);
        yield return ("kubernetes.image", Kubernetes?.Image);
    }

    private static bool IsEnvName(string key) =>
        key.Length is > 0 and <= 256 && (char.IsAsciiLetter(key[0]) || key[0] == '_') && key.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    /// <summary>Fills the optional parts with their defaults, so the stored form is complete. Call after a successful <see cref="Validate"/>.</summary>
    public TemplateDefinition Normalize()
    {
        Category = string.IsNullOrWhiteSpace(Category) ? DefaultCategory : Category.Trim();
        Description ??= "";
        Icon ??= "";
        Home ??= new TemplateHome();
        Home.MountPath ??= DefaultHomeMountPath;
        // A variable given no value (YAML "NAME:" or JSON null) is set empty, as the API's schema has it: a string.
        Env = Env is null ? [] : Env.ToDictionary(e => e.Key, e => e.Value ?? "", StringComparer.Ordinal);
        return this;
    }

    /// <summary>Can an agent of <paramref name="platform"/> start this template?</summary>
    public bool RunsOn(string platform) => platform switch
    {
        Platforms.Process => !string.IsNullOrWhiteSpace(Process?.Command),
        Platforms.Docker => !string.IsNullOrWhiteSpace(Docker?.Image),
        Platforms.Kubernetes => !string.IsNullOrWhiteSpace(Kubernetes?.Image),
        // Load-test agents pretend to run anything.
        Platforms.Simulated => true,
        _ => false,
    };

    /// <summary>What an agent needs to start a session of this template, for every runtime it offers.</summary>
    public SessionLaunchSpec ToLaunchSpec() => new()
    {
        ProcessCommand = Process?.Command,
        DockerImage = Docker?.Image,
        DockerCommand = Docker?.Command,
        KubernetesImage = Kubernetes?.Image,
        VncPort = Stream?.Port ?? DefaultVncPort,
        HomeMountPath = Home?.MountPath ?? DefaultHomeMountPath,
        Env = new Dictionary<string, string>(Env ?? [], StringComparer.Ordinal),
    };
}

public sealed class TemplateResources
{
    public string? Cpu { get; set; }
    public string? Memory { get; set; }
}

public sealed class TemplateStream
{
    public string? Protocol { get; set; }
    public int Port { get; set; } = TemplateDefinition.DefaultVncPort;
}

public sealed class TemplateHome
{
    public string? MountPath { get; set; }
}

public sealed class ProcessRuntime
{
    /// <summary>Run with <c>/bin/sh -c</c> on the session's display.</summary>
    public string? Command { get; set; }
}

public sealed class DockerRuntime
{
    public string? Image { get; set; }
    public string? Command { get; set; }
}

public sealed class KubernetesRuntime
{
    public string? Image { get; set; }
}
