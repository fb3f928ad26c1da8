namespace StreamSpace.ControlPlane.Hosting;

/// <summary>Collects field errors of a request body; <see cref="ToResult"/> gives the 400 naming them.</summary>
public sealed class Validation
{
    private readonly Dictionary<string, string> _fields = new(StringComparer.Ordinal);

    public bool IsValid => _fields.Count == 0;

    public Validation Require(bool condition, string field, string message)
    {
        if (!condition) _fields.TryAdd(field, message);
        return this;
    }

    /// <summary>Text the database cannot store (<see cref="Data.StorableText"/>) is refused by name.</summary>
    public Validation RequireStorable(string field, string? text) => Require(Data.StorableText.IsStorable(text), field, Data.StorableText.Problem);

    public Validation Add(string field, string message)
    {
        _fields.TryAdd(field, message);
        return this;
    }

    public Microsoft.AspNetCore.Http.HttpResults.JsonHttpResult<ApiError> ToResult() =>
        ApiErrors.BadRequest(
            "The request is invalid: " + string.Join("; ", _fields.Select(kv => $"{kv.Key}: {kv.Value}")),
            _fields);
}
