using System.Text.Json;
using Dapper;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>The template catalog: everyone reads it, admins change it (JSON or YAML bodies).</summary>
public static class TemplatesApi
{
    public static IServiceCollection AddStreamSpaceTemplates(this IServiceCollection services) => services.AddSingleton<TemplateCatalog>();

    private const string TemplateBodyText = "The template as JSON or YAML (the fields of templates/*.yaml); a name in it must match the path.";

    public static IEndpointRouteBuilder MapTemplatesApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/v1/templates").WithTags("Templates");
        group.MapGet("/", ListAsync).RequireAuthorization(Policies.User);
        group.MapGet("/{name}", GetAsync).RequireAuthorization(Policies.User);
        // The body is read by hand (JSON or YAML), so no Accepts<> metadata: it would make routing refuse
        // other media types before the handler can answer them with a clear 415.
        group.MapPost("/{name}", CreateAsync).RequireAuthorization(Policies.Admin).AcceptsDocumentedBody(typeof(TemplateDefinition), TemplateBodyText, "application/json", "application/yaml")
            .ProducesApiError(StatusCodes.Status409Conflict, "A template with that name exists (PUT changes it).")
            .WithoutApiError(StatusCodes.Status404NotFound);
        group.MapPut("/{name}", ReplaceAsync).RequireAuthorization(Policies.Admin).AcceptsDocumentedBody(typeof(TemplateDefinition), TemplateBodyText, "application/json", "application/yaml");
        group.MapDelete("/{name}", DeleteAsync).RequireAuthorization(Policies.Admin)
            .ProducesApiError(StatusCodes.Status409Conflict, "Live sessions use the template.");
        return routes;
    }

    public static async Task<Ok<IReadOnlyList<TemplateView>>> ListAsync(TemplateCatalog catalog, CancellationToken ct) =>
        TypedResults.Ok(await catalog.ListAsync(ct));

    public static async Task<Results<Ok<TemplateView>, JsonHttpResult<ApiError>>> GetAsync(string name, TemplateCatalog catalog, CancellationToken ct) =>
        await catalog.FindAsync(name, ct) is { } template ? TypedResults.Ok(template) : NotFound(name);

    public static async Task<Results<Created<TemplateView>, JsonHttpResult<ApiError>>> CreateAsync(
        string name, HttpRequest request, TemplateCatalog catalog, Db db, AuditLog audit, IOptions<JsonOptions> json, CancellationToken ct)
    {
        var (template, error) = await ReadTemplateAsync(name, request, json.Value.SerializerOptions, ct);
        if (error is not null) return error;
        var user = CurrentUser.From(request.HttpContext.User);
        var created = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (!await catalog.InsertAsync(conn, tx, template!, builtin: false, ct)) return null;
            await audit.WriteAsync(conn, tx, user.Username, AuditActions.TemplateChanged, name, "created", request.HttpContext, ct);
            return await catalog.FindAsync(conn, tx, name, ct);
        }, ct);
        return created is null
            ? ApiErrors.Conflict($"A template named '{name}' already exists; use PUT /api/v1/templates/{name} to change it.")
            : TypedResults.Created($"/api/v1/templates/{name}", created);
    }

    public static async Task<Results<Ok<TemplateView>, JsonHttpResult<ApiError>>> ReplaceAsync(
        string name, HttpRequest request, TemplateCatalog catalog, Db db, AuditLog audit, IOptions<JsonOptions> json, CancellationToken ct)
    {
        var (template, error) = await ReadTemplateAsync(name, request, json.Value.SerializerOptions, ct);
        if (error is not null) return error;
        var user = CurrentUser.From(request.HttpContext.User);
        var updated = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (!await catalog.UpdateAsync(conn, tx, template!, ct)) return null;
            await audit.WriteAsync(conn, tx, user.Username, AuditActions.TemplateChanged, name, "updated", request.HttpContext, ct);
            return await catalog.FindAsync(conn, tx, name, ct);
        }, ct);
        return updated is null ? NotFound(name) : TypedResults.Ok(updated);
    }

    public static async Task<Results<NoContent, JsonHttpResult<ApiError>>> DeleteAsync(
        string name, HttpContext http, TemplateCatalog catalog, Db db, AuditLog audit, CancellationToken ct)
    {
        var user = CurrentUser.From(http.User);
        // Locked, counted and deleted in one write transaction; session creation share-locks the template row in its
        // own, so a session of this template can never appear between the count and the delete.
        var (found, liveSessions) = await db.InTransactionAsync(async (conn, tx) =>
        {
            if (await catalog.FindAsync(conn, tx, name, ct, TemplateLock.Update) is null) return (false, 0L);
            var live = await conn.ExecuteScalarAsync<long>(new CommandDefinition(
                $"SELECT COUNT(*) FROM sessions WHERE template = @name AND state IN ({SessionState.LiveSqlList})",
                new { name }, tx, cancellationToken: ct));
            if (live > 0) return (true, live);
            await catalog.DeleteAsync(conn, tx, name, ct);
            await audit.WriteAsync(conn, tx, user.Username, AuditActions.TemplateChanged, name, "deleted", http, ct);
            return (true, 0L);
        }, ct);
        if (!found) return NotFound(name);
        if (liveSessions > 0)
            return ApiErrors.Conflict(
                $"Template '{name}' is used by {liveSessions} live session{(liveSessions == 1 ? "" : "s")}; delete or wait for them to end first.");
        return TypedResults.NoContent();
    }

    /// <summary>
    /// Reads a template body as JSON (default) or YAML (<c>application/yaml</c>, <c>text/yaml</c>), validates it
    /// and checks that a name in the body matches the route. The route's name wins when the body has none.
    /// </summary>
    private static async Task<(TemplateDefinition? Template, JsonHttpResult<ApiError>? Error)> ReadTemplateAsync(
        string name, HttpRequest request, JsonSerializerOptions jsonOptions, CancellationToken ct)
    {
        var mediaType = request.ContentType?.Split(';')[0].Trim().ToLowerInvariant();
        TemplateDefinition? template;
        var yaml = mediaType is "application/yaml" or "text/yaml" or "application/x-yaml";
        var json = !yaml && (mediaType is null or "application/json" || mediaType!.EndsWith("+json", StringComparison.Ordinal));
        if (!yaml && !json)
        {
            return (null, ApiErrors.Of(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"Send the template as application/json or application/yaml, not {mediaType}."));
        }
        var (text, decodeError) = await RequestBodyText.ReadAsync(request, "template", ct);
        if (decodeError is not null) return (null, decodeError);
        if (yaml)
        {
            if (!TemplateYaml.TryParse(text!, out template, out var yamlError))
                return (null, ApiErrors.BadRequest($"The request body is not a valid template: {yamlError}", new Dictionary<string, string> { ["body"] = yamlError! }));
        }
        else
        {
            try
            {
                template = JsonSerializer.Deserialize<TemplateBody>(text!, jsonOptions);
            }
            catch (JsonException ex)
            {
                // Described against the definition, so "it takes ..." lists only the fields a body can set.
                var (message, field, problem) = JsonErrorText.Describe(ex, typeof(TemplateDefinition), jsonOptions);
                // A field's problem names the field; a body-level one already says "The request body ...".
                return (null, ApiErrors.BadRequest(field is null ? message : $"The request body is not a valid template: {message}",
                    new Dictionary<string, string> { [field ?? "body"] = problem ?? message }));
            }
            if (template is null)
                return (null, ApiErrors.BadRequest("The request body must be a template object.", new Dictionary<string, string> { ["body"] = "is required" }));
        }

        if (template!.Name is { } bodyName && bodyName != name)
            return (null, ApiErrors.BadRequest($"The name in the body ('{bodyName}') does not match the name in the path ('{name}').",
                new Dictionary<string, string> { ["name"] = $"must match the path ('{name}')" }));
        template.Name = name;
        var validation = template.Validate();
        return validation.IsValid ? (template.Normalize(), null) : (null, validation.ToResult());
    }

    private static JsonHttpResult<ApiError> NotFound(string name) =>
        ApiErrors.NotFound($"There is no template named '{name}'.");

    /// <summary>
    /// A JSON template body: the definition, plus the catalog's bookkeeping that GET adds (<see cref="TemplateView"/>),
    /// taken with any value and ignored, so the answer of a GET can be edited and sent back as it is
    /// (<c>curl | jq | curl</c>). Any other unknown field is still refused. Stored as its <see cref="TemplateDefinition"/>
    /// only (<see cref="TemplateCatalog"/> serializes that type), so nothing of these reaches the catalog.
    /// </summary>
    private sealed class TemplateBody : TemplateDefinition
    {
        public JsonElement? Builtin { get; set; }
        public JsonElement? CreatedAt { get; set; }
        public JsonElement? UpdatedAt { get; set; }
    }
}
