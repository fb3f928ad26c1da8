using Microsoft.AspNetCore.Http.HttpResults;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>The body of every error answer: a short <c>error</c>, a human <c>message</c>, and details where useful.</summary>
public sealed record ApiError(string Error, string Message)
{
    /// <summary>Validation errors by field name (400), and the fields of a session request above its template's resources (403).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? Fields { get; init; }
    /// <summary>Why each agent was passed over (503 at session creation).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<AgentRejection>? Reasons { get; init; }
    /// <summary>
    /// How many sessions the agent may still run that ended without its word (409 at agent delete): the one refusal
    /// <c>?force=true</c> overrides, unlike live sessions.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public long? UnconfirmedSessions { get; init; }
    /// <summary>
    /// How many deleted users' persistent homes the agent still holds, their <c>home.delete</c> waiting for it (409 at agent
    /// delete, overridden by <c>?force=true</c> like <see cref="UnconfirmedSessions"/>).
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public long? PendingHomeDeletes { get; init; }
}

public sealed record AgentRejection(string AgentId, string Reason);

/// <summary>Builders for <see cref="ApiError"/> answers, one per status of design §4.</summary>
public static class ApiErrors
{
    public static JsonHttpResult<ApiError> Of(int status, string error, string message) =>
        TypedResults.Json(new ApiError(error, message), statusCode: status);

    public static JsonHttpResult<ApiError> BadRequest(string message, IReadOnlyDictionary<string, string>? fields = null) =>
        TypedResults.Json(new ApiError("Validation failed", message) { Fields = fields }, statusCode: StatusCodes.Status400BadRequest);

    public static JsonHttpResult<ApiError> NotFound(string what) =>
        Of(StatusCodes.Status404NotFound, "Not found", what);

    public static JsonHttpResult<ApiError> Conflict(string message) =>
        Of(StatusCodes.Status409Conflict, "Conflict", message);

    public static JsonHttpResult<ApiError> Forbidden(string message, string error = "Forbidden") =>
        Of(StatusCodes.Status403Forbidden, error, message);
}
