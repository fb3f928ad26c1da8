using Npgsql;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// How STREAMSPACE_DATABASE is read: the postgres:// URL's query carries Npgsql's connection settings (never dropped, a
/// name or value it does not take refused), a plain connection string in any spelling is taken, and an error never
/// repeats a password.
/// </summary>
public sealed class DatabaseTargetTests
{
    private static NpgsqlConnectionStringBuilder Postgres(string value)
    {
        var target = DatabaseTarget.Parse(value, Path.GetTempPath());
        target.Kind.ShouldBe(DatabaseKind.Postgres);
        return new NpgsqlConnectionStringBuilder(target.ConnectionString);
    }

    [Fact]
    public void The_URLs_query_sets_connection_settings_over_the_defaults()
    {
        var csb = Postgres("postgres://app:secret@127.0.0.1:5433/streamspace?sslmode=require&Maximum%20Pool%20Size=80&Timeout=15");
        csb.SslMode.ShouldBe(SslMode.Require);
        csb.MaxPoolSize.ShouldBe(80);
        csb.Timeout.ShouldBe(15);
        (csb.Host, csb.Port, csb.Database, csb.Username, csb.Password).ShouldBe(("127.0.0.1", 5433, "streamspace", "app", "secret"));
    }

    [Fact]
    public void The_URLs_query_takes_libpqs_names_as_providers_write_them()
    {
        var csb = Postgres("postgres://app:secret@127.0.0.1/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&channel_binding=require" +
                           "&application_name=streamspace&connect_timeout=12&target_session_attrs=read-write&keepalives=1&keepalives_idle=30" +
                           "&sslcert=/etc/client.pem&sslkey=/etc/client.key&gssencmode=disable");
        csb.SslMode.ShouldBe(SslMode.VerifyFull);
        csb.RootCertificate.ShouldBe("/etc/ca.pem");
        csb.ChannelBinding.ShouldBe(ChannelBinding.Require);
        csb.ApplicationName.ShouldBe("streamspace");
        csb.Timeout.ShouldBe(12);
        csb.TargetSessionAttributes.ShouldBe("read-write");
        csb.TcpKeepAlive.ShouldBeTrue();
        csb.TcpKeepAliveTime.ShouldBe(30);
        (csb.SslCertificate, csb.SslKey).ShouldBe(("/etc/client.pem", "/etc/client.key"));
        csb.GssEncryptionMode.ShouldBe(GssEncryptionMode.Disable);
    }

    [Fact]
    public void Without_a_query_the_defaults_stay()
    {
        var csb = Postgres("postgres://app@127.0.0.1/streamspace");
        (csb.MaxPoolSize, csb.Timeout, csb.SslMode).ShouldBe((50, 5, SslMode.Prefer));
    }

    [Theory]
    [InlineData("postgres://app@127.0.0.1/db?sslmod=require", "'sslmod=require'")]
    [InlineData("postgres://app@127.0.0.1/db?sslmode=sometimes", "'sslmode=sometimes'")]
    [InlineData("postgres://app@127.0.0.1/db?Timeout=soon", "'Timeout=soon'")]
    public void A_query_setting_the_client_does_not_take_is_refused_not_dropped(string value, string named)
    {
        var message = Should.Throw<StreamSpaceConfigurationException>(() => DatabaseTarget.Parse(value, Path.GetTempPath())).Message;
        message.ShouldContain(named);
        message.ShouldContain("is not a connection setting");
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Database=x")]
    [InlineData("Server=127.0.0.1;Database=x")]
    [InlineData("host = 127.0.0.1; database = x")]
    public void A_plain_connection_string_is_taken_in_any_spelling(string value) =>
        Postgres(value).Host.ShouldBe("127.0.0.1");

    [Theory]
    [InlineData("postgres://u:pg@Secret@/x", "pg@Secret")]
    [InlineData("Database=x;Password=pgSecretPw77", "pgSecretPw77")]
    [InlineData("Database = x; PWD = pgSecretPw77; Pooling=true", "pgSecretPw77")]
    [InlineData("postgres://u@127.0.0.1/db?Password=pgSecretPw77&sslmod=x", "pgSecretPw77")]
    [InlineData("postgres://u@127.0.0.1/db?password=pgSecretPw77&Timeout=soon", "pgSecretPw77")]
    public void A_refusal_never_repeats_the_password(string value, string password) =>
        Should.Throw<StreamSpaceConfigurationException>(() => DatabaseTarget.Parse(value, Path.GetTempPath())).Message.ShouldNotContain(password);

    [Fact]
    public void A_password_in_the_query_is_a_setting_like_any_other() =>
        Postgres("postgres://u@127.0.0.1/db?password=pg%40Secret").Password.ShouldBe("pg@Secret");
}
