namespace StreamSpace.ControlPlane.Web.Api;

/// <summary>The outcome of one API call: the value, or the status with the API's error body.</summary>
public sealed record ApiResult<T>(int Status, T? Value, ApiErrorBody? Error)
{
    public bool IsSuccess => Status is >= 200 and < 300;

    /// <summary>The error in words, as the API said it (falling back to the status).</summary>
    public string Message => Error?.Message is { Length: > 0 } m ? m : Status switch
    {
        0 => "The control plane did not answer.",
        401 => "Your sign-in has expired; sign in again.",
        403 => "You are not allowed to do this.",
        404 => "It no longer exists.",
        _ => $"The request failed (HTTP {Status}).",
    };
}

public static class ApiResult
{
    public static ApiResult<T> Success<T>(int status, T? value) => new(status, value, null);
    public static ApiResult<T> Failure<T>(int status, ApiErrorBody? error) => new(status, default, error);
}

/// <summary>For calls that answer no body worth reading (202 Accepted, 204 No Content).</summary>
public readonly record struct NoContent;
