using System.Text.Json.Serialization;

namespace StreamSpace.ControlPlane.Web.Api;

// The API's JSON as the UI reads it (design §4). Read leniently: unknown fields are ignored and resources or
// capacities may come as numbers or strings, so a field added by the API never breaks a page.

public sealed record ApiErrorBody(string? Error, string? Message)
{
    public Dictionary<string, string>? Fields { get; init; }
    public List<AgentRejectionBody>? Reasons { get; init; }
    /// <summary>Set on an agent delete's 409 that <c>?force=true</c> overrides (sessions the agent has not confirmed stopping).</summary>
    public long? UnconfirmedSessions { get; init; }
    /// <summary>Set on an agent delete's 409 that <c>?force=true</c> overrides (deleted users' homes the agent still holds).</summary>
    public long? PendingHomeDeletes { get; init; }
}

public sealed record AgentRejectionBody(string AgentId, string Reason);

public sealed record ResourcesBody(
    [property: JsonConverter(typeof(LenientStringConverter))] string? Cpu,
    [property: JsonConverter(typeof(LenientStringConverter))] string? Memory);

public sealed record SessionBody
{
    public required string Id { get; init; }
    public string? Name { get; init; }
    public string? User { get; init; }
    public string? Template { get; init; }
    public required string State { get; init; }
    public string? AgentId { get; init; }
    public ResourcesBody? Resources { get; init; }
    public bool PersistentHome { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    public string? StateReason { get; init; }
    public DateTimeOffset? LastActivityAt { get; init; }
}

public sealed record CreateSessionBody(
    string Template,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ResourcesBody? Resources,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? PersistentHome);

public sealed record TemplateBody
{
    public required string Name { get; init; }
    public string? DisplayName { get; init; }
    public string? Description { get; init; }
    public string? Category { get; init; }
    public string? Icon { get; init; }
    public ResourcesBody? DefaultResources { get; init; }
}

public sealed record AgentBody
{
    public required string AgentId { get; init; }
    public string? Status { get; init; }
    public DateTimeOffset? LastHeartbeat { get; init; }
    public string? Platform { get; init; }
    public string? Region { get; init; }
    [JsonConverter(typeof(LenientIntConverter))] public int Capacity { get; init; }
    [JsonConverter(typeof(LenientIntConverter))] public int ActiveSessions { get; init; }
    public string? Version { get; init; }
    public DateTimeOffset? ConnectedAt { get; init; }
    public bool Draining { get; init; }
    /// <summary>Drained by an admin (lifted by "Resume"); <see cref="AgentDraining"/>: the agent said so itself (it is stopping).</summary>
    public bool AdminDraining { get; init; }
    public bool AgentDraining { get; init; }
    public string? SessionLimits { get; init; }
}

public sealed record CreateAgentBody(
    string AgentId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Platform,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Region,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? MaxSessions);

public sealed record AgentCredentialsBody(string AgentId, string Token);

public sealed record UserBody
{
    public required string Id { get; init; }
    public required string Username { get; init; }
    public string Role { get; init; } = "user";
    public bool Disabled { get; init; }
    public int MaxSessions { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
}

/// <summary>A new user; without <see cref="MaxSessions"/> the API gives the configured default quota (<c>StreamSpace__DefaultMaxSessions</c>).</summary>
public sealed record CreateUserBody(
    string Username, string Password, string Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? MaxSessions);

/// <summary>A partial update of a user; only the set fields are sent.</summary>
public sealed record UpdateUserBody
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Role { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? MaxSessions { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public bool? Disabled { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Password { get; init; }
}

public sealed record AuditEntryBody
{
    [JsonConverter(typeof(LenientStringConverter))] public string? Id { get; init; }
    public DateTimeOffset At { get; init; }
    public string? Actor { get; init; }
    public string? User { get; init; }
    public string? Action { get; init; }
    public string? Target { get; init; }
    public string? Detail { get; init; }
    public string? ClientIp { get; init; }

    /// <summary>Who did it, whichever name the API gives that field.</summary>
    public string? Who => Actor ?? User;
}

/// <summary>
/// Filters of <c>GET /api/v1/sessions</c> as the UI asks them, and how many sessions (newest first) to read through
/// its pages. <see cref="Live"/>: true = only sessions that still hold quota, false = only ended ones.
/// </summary>
public sealed record SessionQuery(int Want, string? User = null, string? Agent = null, string? State = null, bool? Live = null)
{
    /// <summary>The API's largest page.</summary>
    public const int MaxPage = 500;

    public string ToQueryString()
    {
        var parts = new List<string>();
        if (!string.IsNullOrEmpty(User)) parts.Add("user=" + Uri.EscapeDataString(User));
        if (!string.IsNullOrEmpty(Agent)) parts.Add("agent=" + Uri.EscapeDataString(Agent));
        if (!string.IsNullOrEmpty(State)) parts.Add("state=" + Uri.EscapeDataString(State));
        if (Live is { } live) parts.Add(live ? "live=true" : "live=false");
        parts.Add("limit=" + Math.Clamp(Want, 1, MaxPage).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return "?" + string.Join('&', parts);
    }
}

/// <summary>Sessions read through the API's pages; <see cref="More"/>: older sessions exist beyond these.</summary>
public sealed record SessionList(List<SessionBody> Sessions, bool More);
