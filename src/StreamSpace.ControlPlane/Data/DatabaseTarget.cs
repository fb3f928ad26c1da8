using Microsoft.Data.Sqlite;
using Npgsql;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Data;

public enum DatabaseKind { Sqlite, Postgres }

/// <summary>
/// Where the data lives, parsed from <c>STREAMSPACE_DATABASE</c>: <c>sqlite:PATH</c> or
/// <c>postgres://user:pass@host:port/db[?setting=value&amp;…]</c> (Npgsql's connection settings in the query, e.g.
/// <c>sslmode=require</c>; a plain Npgsql connection string also works).
/// </summary>
public sealed record DatabaseTarget(DatabaseKind Kind, string ConnectionString)
{
    public static DatabaseTarget Parse(string? value, string dataFolder)
    {
        if (string.IsNullOrWhiteSpace(value))
            return Sqlite(Path.Combine(dataFolder, "streamspace.db"), "STREAMSPACE_DATA");
        if (value.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            var path = value["sqlite:".Length..];
            if (path.Length == 0) throw new StreamSpaceConfigurationException("STREAMSPACE_DATABASE 'sqlite:' needs a file path, e.g. sqlite:./data/streamspace.db");
            return Sqlite(path, "STREAMSPACE_DATABASE");
        }
        if (value.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Host.Length == 0)
                throw new StreamSpaceConfigurationException($"STREAMSPACE_DATABASE is not a valid postgres:// URL (postgres://user:pass@host:port/db): '{StreamSpaceConfigurationException.WithoutPassword(value)}'");
            var userInfo = uri.UserInfo.Split(':', 2);
            var csb = new NpgsqlConnectionStringBuilder
            {
                Host = uri.Host,
                Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port,
                Database = uri.AbsolutePath.Trim('/') is { Length: > 0 } db ? Uri.UnescapeDataString(db) : "streamspace",
                Username = userInfo.Length > 0 && userInfo[0].Length > 0 ? Uri.UnescapeDataString(userInfo[0]) : "postgres",
                Password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : null,
                MaxPoolSize = 50,
                Timeout = 5,
            };
            ApplyQuery(csb, uri.Query);
            return new DatabaseTarget(DatabaseKind.Postgres, csb.ConnectionString);
        }
        // A plain Npgsql connection string, in any of its spellings (Server= as well as Host=, spaces around '=').
        if (value.Contains('=') && ConnectionStringHost(value) is { Length: > 0 })
            return new DatabaseTarget(DatabaseKind.Postgres, value);
        throw new StreamSpaceConfigurationException($"STREAMSPACE_DATABASE must be 'sqlite:PATH' or 'postgres://user:pass@host:port/db', got '{StreamSpaceConfigurationException.WithoutPassword(value)}'");
    }

    /// <summary>
    /// The URL's query as connection settings (<c>?sslmode=require&amp;sslrootcert=/ca.pem</c> in libpq's names, or Npgsql's
    /// own keywords such as <c>Maximum%20Pool%20Size=80</c>), over the defaults above; a name neither knows or a value it
    /// cannot take is refused, never dropped: a dropped <c>sslmode=verify-full</c> would connect without the TLS asked for.
    /// </summary>
    private static void ApplyQuery(NpgsqlConnectionStringBuilder csb, string query)
    {
        static string Unescape(string part) => Uri.UnescapeDataString(part.Replace('+', ' '));
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=', 2);
            var key = Unescape(parts[0]);
            var value = parts.Length == 2 ? Unescape(parts[1]) : "";
            try
            {
                if (LibpqNames.TryGetValue(key, out var npgsql))
                    csb[npgsql.Keyword] = npgsql.Value?.Invoke(value) ?? value;
                else
                    csb[key] = value;
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidCastException or OverflowException)
            {
                var shown = key.Equals("password", StringComparison.OrdinalIgnoreCase) || key.Equals("pwd", StringComparison.OrdinalIgnoreCase) ? "***" : value;
                throw new StreamSpaceConfigurationException(
                    $"STREAMSPACE_DATABASE: '{key}={shown}' in the URL's query is not a connection setting the control plane's PostgreSQL client takes " +
                    "(libpq's names such as sslmode, sslrootcert, application_name, connect_timeout, or Npgsql's keywords such as Maximum%20Pool%20Size)");
            }
        }
    }

    /// <summary>
    /// The query names of a libpq connection URI (what providers and other clients write in a postgres:// URL) as Npgsql's
    /// keywords, with the value's form where it differs (libpq's sslmode=verify-full, keepalives=1). Npgsql's own keywords work as they are.
    /// </summary>
    private static readonly Dictionary<string, (string Keyword, Func<string, string>? Value)> LibpqNames = new(StringComparer.OrdinalIgnoreCase)
    {
        ["sslmode"] = ("SSL Mode", v => v.Trim().ToLowerInvariant() switch { "verify-full" => "VerifyFull", "verify-ca" => "VerifyCA", _ => v }),
        ["application_name"] = ("Application Name", null),
        ["connect_timeout"] = ("Timeout", null),
        ["dbname"] = ("Database", null),
        ["user"] = ("Username", null),
        ["sslrootcert"] = ("Root Certificate", null),
        ["sslcert"] = ("SSL Certificate", null),
        ["sslkey"] = ("SSL Key", null),
        ["sslpassword"] = ("SSL Password", null),
        ["target_session_attrs"] = ("Target Session Attributes", null),
        ["channel_binding"] = ("Channel Binding", null),
        ["gssencmode"] = ("GSS Encryption Mode", null),
        ["krbsrvname"] = ("Kerberos Service Name", null),
        ["passfile"] = ("Passfile", null),
        ["keepalives"] = ("Tcp Keepalive", v => v.Trim() switch { "1" => "true", "0" => "false", var other => other }),
        ["keepalives_idle"] = ("Tcp Keepalive Time", null),
        ["keepalives_interval"] = ("Tcp Keepalive Interval", null),
    };

    private static string? ConnectionStringHost(string value)
    {
        try
        {
            return new NpgsqlConnectionStringBuilder(value).Host;
        }
        catch (ArgumentException)
        {
            return null; // not a connection string Npgsql reads (an unknown keyword, no '=' in a part)
        }
    }

    /// <param name="setting">The setting that named the file, for the error when its folder cannot be made.</param>
    private static DatabaseTarget Sqlite(string path, string setting)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A setting the control plane cannot start with (exit code 2), said in one line, not an unhandled exception.
            throw new StreamSpaceConfigurationException($"{setting}: cannot make the folder '{folder}' for the SQLite database: {ex.Message}", ex);
        }
        var csb = new SqliteConnectionStringBuilder { DataSource = full, Cache = SqliteCacheMode.Private, Pooling = true, DefaultTimeout = 30 };
        return new DatabaseTarget(DatabaseKind.Sqlite, csb.ConnectionString);
    }

    /// <summary>For logs: never the password.</summary>
    public string Describe() => Kind == DatabaseKind.Sqlite
        ? $"sqlite:{new SqliteConnectionStringBuilder(ConnectionString).DataSource}"
        : new NpgsqlConnectionStringBuilder(ConnectionString) is var b ? $"postgres://{b.Username}@{b.Host}:{b.Port}/{b.Database}" : "";
}
