using StreamSpace.ControlPlane.Web.Api;

namespace StreamSpace.ControlPlane.Web.Components.Shared;

/// <summary>An error to show on a page: the sentence plus the API's details.</summary>
public sealed record UiError(string Message, ApiErrorBody? Error)
{
    public static UiError From<T>(ApiResult<T> result) => new(result.Message, result.Error);
}
