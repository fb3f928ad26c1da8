using System.Data;
using System.Globalization;
using Dapper;
using Microsoft.Data.Sqlite;

namespace StreamSpace.ControlPlane.Data;

/// <summary>
/// Timestamps: PostgreSQL stores <c>timestamptz</c>; SQLite stores a fixed-width UTC text form so that
/// string comparison orders correctly (<c>last_heartbeat &lt; @cutoff</c>). Microsoft.Data.Sqlite's own
/// format trims trailing zeros, which breaks ordering, hence this handler.
/// </summary>
internal static class DapperSetup
{
    public const string SqliteTimestampFormat = "yyyy-MM-dd HH:mm:ss.fffffff+00:00";
    private static int _registered;

    public static void EnsureRegistered()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 1) return;
        SqlMapper.AddTypeHandler(new DateTimeOffsetHandler());
    }

    public static string ToSqliteText(DateTimeOffset value) =>
        value.UtcDateTime.ToString(SqliteTimestampFormat, CultureInfo.InvariantCulture);

    private sealed class DateTimeOffsetHandler : SqlMapper.TypeHandler<DateTimeOffset>
    {
        public override void SetValue(IDbDataParameter parameter, DateTimeOffset value)
        {
            if (parameter is SqliteParameter)
            {
                parameter.DbType = DbType.String;
                parameter.Value = ToSqliteText(value);
            }
            else
            {
                parameter.DbType = DbType.DateTimeOffset;
                parameter.Value = value.ToUniversalTime();
            }
        }

        public override DateTimeOffset Parse(object value) => value switch
        {
            DateTimeOffset dto => dto.ToUniversalTime(),
            DateTime dt => new DateTimeOffset(DateTime.SpecifyKind(dt, DateTimeKind.Utc)),
            string s => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal),
            _ => throw new DataException($"Cannot read a timestamp from {value.GetType().Name}"),
        };
    }
}
