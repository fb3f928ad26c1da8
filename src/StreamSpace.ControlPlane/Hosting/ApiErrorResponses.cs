using System.Reflection;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using StreamSpace.ControlPlane.Identity;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>
/// The error answers (<see cref="ApiError"/>: <c>{error, message}</c>, design §4) of the HTTP API as OpenAPI response
/// metadata, so <c>/openapi/v1.json</c> lists them next to the success. The answers every endpoint of a kind can give are
/// added once all of an endpoint's own metadata is known (<see cref="Describe"/>): 401 without a valid token, 403 for an
/// admin endpoint, 400 and 404 where there is input and an id, 413 and 415 with a JSON body, 503 while the database is
/// unavailable. An endpoint names what only it answers (409, 429, …) with <see cref="ProducesApiError{TBuilder}"/>, which
/// also replaces a generic description of the same status.
/// </summary>
public static class ApiErrorResponses
{
    private static readonly string[] Json = ["application/json"];
    private const string TooLarge = "The body is larger than StreamSpace__MaxRequestBodyBytes.";

    /// <summary>Documents one error answer of this endpoint (an <see cref="ApiError"/> body with this status).</summary>
    public static TBuilder ProducesApiError<TBuilder>(this TBuilder builder, int statusCode, string description)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(Error(statusCode, description));

    /// <summary>This endpoint never gives <paramref name="statusCode"/>, although its kind would (a create by a name in the path: no 404).</summary>
    public static TBuilder WithoutApiError<TBuilder>(this TBuilder builder, int statusCode)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new NotAnswered(statusCode));

    /// <summary>A WebSocket endpoint: its success is the upgrade (101), not a body.</summary>
    public static TBuilder ProducesWebSocket<TBuilder>(this TBuilder builder, string description)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status101SwitchingProtocols, typeof(void)) { Description = description });

    /// <summary>
    /// A body the handler reads itself (so routing must not see accepts metadata, which would refuse other media types
    /// before the handler answers them with its own 415), documented as the request body of <paramref name="type"/> in
    /// these media types, with the 413 and 415 a body brings.
    /// </summary>
    public static TBuilder AcceptsDocumentedBody<TBuilder>(this TBuilder builder, Type type, string description, params string[] contentTypes)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new DocumentedBody(type, description, contentTypes))
            .ProducesApiError(StatusCodes.Status413PayloadTooLarge, TooLarge)
            .ProducesApiError(StatusCodes.Status415UnsupportedMediaType, $"The body is not sent as {string.Join(" or ", contentTypes)}.");

    /// <summary>
    /// OpenAPI operation transformer: each response gets the description its metadata gives (the generator writes only
    /// the status's name, "Conflict"), and a <see cref="AcceptsDocumentedBody{TBuilder}"/> body its request body.
    /// </summary>
    public static async Task DescribeOperationAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(operation);
        ArgumentNullException.ThrowIfNull(context);
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        if (operation.Responses is { } responses)
            foreach (var produced in metadata.OfType<IProducesResponseTypeMetadata>())
                if (produced.Description is { } description
                    && responses.TryGetValue(produced.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture), out var response)
                    && response is OpenApiResponse writable)
                    writable.Description = description;
        if (operation.RequestBody is null && metadata.OfType<DocumentedBody>().FirstOrDefault() is { } body)
        {
            var schema = await context.GetOrCreateSchemaAsync(body.Type, null, ct);
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = true,
                Description = body.Description,
                Content = body.ContentTypes.ToDictionary(c => c, _ => new OpenApiMediaType { Schema = schema }),
            };
        }
    }

    private sealed record NotAnswered(int StatusCode);

    private sealed record DocumentedBody(Type Type, string Description, string[] ContentTypes);

    /// <summary>
    /// Adds the error answers an endpoint under <c>/api/</c> gives by its kind (see the class), unless it documents that
    /// status itself. Run last (<see cref="IEndpointConventionBuilder.Finally"/>), when authorization, route and body
    /// metadata are all there.
    /// </summary>
    public static void Describe(EndpointBuilder endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (endpoint is not RouteEndpointBuilder { RoutePattern: var route } || route.RawText?.StartsWith("/api/", StringComparison.Ordinal) != true) return;
        var metadata = endpoint.Metadata;
        var declared = metadata.OfType<IProducesResponseTypeMetadata>().Select(m => m.StatusCode)
            .Concat(metadata.OfType<NotAnswered>().Select(n => n.StatusCode)).ToHashSet();
        void Add(int status, string description)
        {
            if (declared.Add(status)) metadata.Add(Error(status, description));
        }

        var hasBody = metadata.OfType<IAcceptsMetadata>().Any();
        var hasRouteValues = route.Parameters.Count > 0;
        if (hasBody || hasRouteValues || TakesQuery(metadata, route))
            Add(StatusCodes.Status400BadRequest, "The input is invalid: 'fields' names each field and what is wrong with it.");
        if (!metadata.OfType<IAllowAnonymous>().Any())
            Add(StatusCodes.Status401Unauthorized, "No valid token: sign in with POST /api/v1/auth/login and send 'Authorization: Bearer <token>'.");
        if (metadata.OfType<IAuthorizeData>().Any(a => a.Policy == Policies.Admin))
            Add(StatusCodes.Status403Forbidden, "The caller is not an admin.");
        if (hasRouteValues)
            Add(StatusCodes.Status404NotFound, "Nothing by that name or id (another user's session counts as none).");
        if (hasBody)
        {
            Add(StatusCodes.Status413PayloadTooLarge, TooLarge);
            Add(StatusCodes.Status415UnsupportedMediaType, "The body is not sent as application/json (UTF-8).");
        }
        Add(StatusCodes.Status503ServiceUnavailable, "The database is unreachable or every connection is busy; 'Retry-After' says when to try again.");
    }

    /// <summary>The handler takes a value from the query string: a simple-typed parameter that is not a route value.</summary>
    private static bool TakesQuery(IList<object> metadata, Microsoft.AspNetCore.Routing.Patterns.RoutePattern route) =>
        metadata.OfType<MethodInfo>().FirstOrDefault() is { } handler
        && handler.GetParameters().Any(p => route.GetParameter(p.Name ?? "") is null
                                            && (Nullable.GetUnderlyingType(p.ParameterType) ?? p.ParameterType) is var t
                                            && (t == typeof(string) || t.IsPrimitive));

    private static ProducesResponseTypeMetadata Error(int statusCode, string description) =>
        new(statusCode, typeof(ApiError), Json) { Description = description };
}
