using Microsoft.AspNetCore.Http.HttpResults;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary><c>?force=true|false</c> of an agent delete that a 409 may refuse; absent is false.</summary>
internal static class ForceParameter
{
    /// <summary>The value, or null when it is neither <c>true</c> nor <c>false</c> (answer <see cref="Invalid"/>).</summary>
    public static bool? Parse(string? force) => force switch { null => false, "true" => true, "false" => false, _ => null };

    public static JsonHttpResult<ApiError> Invalid() => new Validation().Add("force", "must be true or false").ToResult();
}
