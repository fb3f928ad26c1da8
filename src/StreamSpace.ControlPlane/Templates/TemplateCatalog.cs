using System.Data.Common;
using System.Text.Json;
using Dapper;
using StreamSpace.ControlPlane.Data;

namespace StreamSpace.ControlPlane.Templates;

/// <summary>
/// The template catalog in <c>templates</c>: the built-ins from <c>templates/*.yaml</c> seeded at start-up,
/// plus whatever admins add or edit through the API. The whole definition is stored as JSON.
/// </summary>
public sealed class TemplateCatalog(Db db, TimeProvider time, ILogger<TemplateCatalog> logger)
{
    /// <summary>Folder, next to the binaries, that the build copies <c>templates/*.yaml</c> into.</summary>
    public static string BuiltInFolder => Path.Combine(AppContext.BaseDirectory, "templates");

    /// <summary>
    /// Marks in <c>settings</c> that a built-in was seeded once, so an admin who deletes a built-in does
    /// not see it come back on the next start. The value is <see cref="Fingerprint"/> of the definition the control
    /// plane last wrote for it, so a later start can tell an untouched built-in (follow the shipped file) from an
    /// edited one (keep the edit).
    /// </summary>
    private const string SeededKeyPrefix = "template.seeded:";

    /// <summary>The mark of built-ins seeded before fingerprints were kept: untouched while never updated.</summary>
    private const string LegacySeededMark = "true";

    private static readonly JsonSerializerOptions StorageJson = new(JsonSerializerDefaults.Web);

    private const string Columns = "name AS Name, definition AS Definition, builtin AS Builtin, created_at AS CreatedAt, updated_at AS UpdatedAt";

    // Property-mapped (not positional): SQLite hands back booleans as Int64, which Dapper converts only for properties.
    private sealed record Row
    {
        public string Name { get; init; } = "";
        public string Definition { get; init; } = "";
        public bool Builtin { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
    }

    /// <summary>Reads and validates every built-in template. A broken built-in file is a build defect: start-up fails loudly.</summary>
    public static IReadOnlyList<TemplateDefinition> LoadBuiltIn(string folder)
    {
        if (!Directory.Exists(folder)) return [];
        var templates = new List<TemplateDefinition>();
        foreach (var file in Directory.EnumerateFiles(folder, "*.yaml").Order(StringComparer.Ordinal))
        {
            if (!TemplateYaml.TryParse(File.ReadAllText(file), out var template, out var error))
                throw new InvalidOperationException($"Built-in template {file}: {error}");
            var validation = template!.Validate();
            if (!validation.IsValid)
                throw new InvalidOperationException($"Built-in template {file} is invalid: {validation.ToResult().Value!.Message}");
            templates.Add(template.Normalize());
        }
        return templates;
    }

    /// <summary>
    /// Inserts built-ins that were never seeded, and brings a built-in nobody edited up to date with the file shipped
    /// now, so an upgrade's template fixes reach existing installs. An admin's edits win: a built-in edited (or
    /// deleted) through the API is never written again. Safe when several replicas start at once (inserts are
    /// <c>ON CONFLICT DO NOTHING</c>; an update writes the same definition).
    /// </summary>
    public Task SeedBuiltInAsync(CancellationToken ct) => SeedBuiltInAsync(BuiltInFolder, ct);

    /// <summary>As <see cref="SeedBuiltInAsync(CancellationToken)"/>, with the shipped files in <paramref name="folder"/> (tests).</summary>
    public async Task SeedBuiltInAsync(string folder, CancellationToken ct)
    {
        var builtIns = LoadBuiltIn(folder);
        if (builtIns.Count == 0)
            logger.LogWarning("No built-in templates found in {Folder}", folder);
        var (seeded, updated) = await db.InTransactionAsync(async (conn, tx) =>
        {
            int seededCount = 0, updatedCount = 0;
            var now = time.GetUtcNow();
            foreach (var template in builtIns)
            {
                var key = SeededKeyPrefix + template.Name;
                var shipped = Fingerprint(Serialize(template));
                var firstTime = await conn.ExecuteAsync(new CommandDefinition(
                    "INSERT INTO settings (key, value, updated_at) VALUES (@key, @shipped, @now) ON CONFLICT (key) DO NOTHING",
                    new { key, shipped, now }, tx, cancellationToken: ct));
                if (firstTime == 1)
                {
                    if (await InsertAsync(conn, tx, template, builtin: true, ct)) seededCount++;
                    continue;
                }
                var written = await conn.ExecuteScalarAsync<string?>(new CommandDefinition(
                    "SELECT value FROM settings WHERE key = @key", new { key }, tx, cancellationToken: ct));
                if (written == shipped) continue;
                var row = await conn.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(
                    $"SELECT {Columns} FROM templates WHERE name = @name AND builtin = @yes", new { name = template.Name, yes = true }, tx, cancellationToken: ct));
                var untouched = row is not null && (written == LegacySeededMark ? row.UpdatedAt == row.CreatedAt : Fingerprint(row.Definition) == written);
                if (!untouched) continue;
                await UpdateAsync(conn, tx, template, ct);
                await conn.ExecuteAsync(new CommandDefinition(
                    "UPDATE settings SET value = @shipped, updated_at = @now WHERE key = @key", new { key, shipped, now }, tx, cancellationToken: ct));
                updatedCount++;
            }
            return (seededCount, updatedCount);
        }, ct);
        if (seeded > 0) logger.LogInformation("Seeded {Count} built-in templates", seeded);
        if (updated > 0) logger.LogInformation("Updated {Count} built-in template(s) nobody had edited to the version shipped now", updated);
    }

    /// <summary>SHA-256 of a stored definition, as hex: what <see cref="SeededKeyPrefix"/> marks hold.</summary>
    private static string Fingerprint(string definition) =>
        "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(definition)));

    public async Task<IReadOnlyList<TemplateView>> ListAsync(CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        var rows = await conn.QueryAsync<Row>(new CommandDefinition($"SELECT {Columns} FROM templates ORDER BY name", cancellationToken: ct));
        return rows.Select(ToView).ToList();
    }

    public async Task<TemplateView?> FindAsync(string name, CancellationToken ct)
    {
        await using var conn = await db.OpenAsync(ct);
        return await FindAsync(conn, null, name, ct);
    }

    /// <summary>
    /// Reads one template, optionally locking its row on PostgreSQL (SQLite write transactions are serialized anyway):
    /// session creation takes <see cref="TemplateLock.Share"/> and template deletion <see cref="TemplateLock.Update"/>, so a
    /// template can never be deleted while a session of it is being created.
    /// </summary>
    public async Task<TemplateView?> FindAsync(DbConnection conn, DbTransaction? tx, string name, CancellationToken ct, TemplateLock rowLock = TemplateLock.None)
    {
        var suffix = !db.IsPostgres ? "" : rowLock switch
        {
            TemplateLock.Share => " FOR SHARE",
            TemplateLock.Update => " FOR UPDATE",
            _ => "",
        };
        var row = await conn.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(
            $"SELECT {Columns} FROM templates WHERE name = @name{suffix}", new { name }, tx, cancellationToken: ct));
        return row is null ? null : ToView(row);
    }

    /// <summary>
    /// The template read of a batch of creates, for one round trip together with the batch's other reads
    /// (<see cref="Sessions.SessionCreator"/>): the templates named in the parameter <c>@t_names</c>, locked
    /// <see cref="TemplateLock.Share"/> on PostgreSQL (as <see cref="FindAsync(DbConnection, DbTransaction?, string, CancellationToken, TemplateLock)"/>
    /// does), in name order. Read the result with <see cref="ReadSharedAsync"/>.
    /// </summary>
    public string ShareSql => $"SELECT {Columns} FROM templates WHERE {db.InList("name", "t_names")} ORDER BY name{(db.IsPostgres ? " FOR SHARE" : "")}";

    /// <summary>Reads the result set of <see cref="ShareSql"/>: the templates that exist, by name.</summary>
    public static async Task<Dictionary<string, TemplateView>> ReadSharedAsync(SqlMapper.GridReader results) =>
        (await results.ReadAsync<Row>()).ToDictionary(r => r.Name, ToView, StringComparer.Ordinal);

    /// <summary>Inserts a validated template; false when one with that name exists.</summary>
    public async Task<bool> InsertAsync(DbConnection conn, DbTransaction? tx, TemplateDefinition template, bool builtin, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var inserted = await conn.ExecuteAsync(new CommandDefinition(
            """
            INSERT INTO templates (name, display_name, category, definition, builtin, created_at, updated_at)
            VALUES (@Name, @DisplayName, @Category, @Definition, @builtin, @now, @now)
            ON CONFLICT (name) DO NOTHING
            """,
            new { template.Name, template.DisplayName, template.Category, Definition = Serialize(template), builtin, now },
            tx, cancellationToken: ct));
        return inserted == 1;
    }

    /// <summary>Replaces a validated template; false when there is none with that name.</summary>
    public async Task<bool> UpdateAsync(DbConnection conn, DbTransaction? tx, TemplateDefinition template, CancellationToken ct)
    {
        var updated = await conn.ExecuteAsync(new CommandDefinition(
            """
            UPDATE templates SET display_name = @DisplayName, category = @Category, definition = @Definition, updated_at = @now
            WHERE name = @Name
            """,
            new { template.Name, template.DisplayName, template.Category, Definition = Serialize(template), now = time.GetUtcNow() },
            tx, cancellationToken: ct));
        return updated == 1;
    }

    public async Task<bool> DeleteAsync(DbConnection conn, DbTransaction? tx, string name, CancellationToken ct) =>
        await conn.ExecuteAsync(new CommandDefinition("DELETE FROM templates WHERE name = @name", new { name }, tx, cancellationToken: ct)) == 1;

    // Stored without the view's bookkeeping fields: exactly the definition.
    private static string Serialize(TemplateDefinition template) =>
        JsonSerializer.Serialize<TemplateDefinition>(template, StorageJson);

    private static TemplateView ToView(Row row)
    {
        var view = JsonSerializer.Deserialize<TemplateView>(row.Definition, StorageJson)
            ?? throw new InvalidOperationException($"Template {row.Name} has an empty definition");
        view.Name = row.Name;
        view.Builtin = row.Builtin;
        view.CreatedAt = row.CreatedAt;
        view.UpdatedAt = row.UpdatedAt;
        return view;
    }
}

/// <summary>Row lock taken by <see cref="TemplateCatalog.FindAsync(DbConnection, DbTransaction?, string, CancellationToken, TemplateLock)"/>.</summary>
public enum TemplateLock
{
    None,
    Share,
    Update,
}
