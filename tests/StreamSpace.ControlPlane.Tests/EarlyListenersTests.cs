using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Hosting;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>
/// The control plane listens from the moment it is built, so connections made while it still starts up (here: waiting
/// for its database) wait in the kernel's accept queue and are served once it is up, instead of being refused.
/// </summary>
public sealed class EarlyListenersTests
{
    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    [Fact]
    public async Task A_connection_made_while_the_control_plane_waits_for_its_database_is_served_once_it_is_up()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var database = await TestDatabase.CreateAsync(DatabaseKind.Postgres);
        var direct = new Uri(database.Setting);
        await using var proxy = new TcpProxy(direct.Host, direct.Port);
        proxy.Cut(); // the database is unreachable: start-up waits in StartupInitializer, before Kestrel starts
        var data = Directory.CreateTempSubdirectory("streamspace-early-").FullName;
        var port = FreePort();
        await using var app = StreamSpaceApp.Build(
        [
            "--urls", $"http://127.0.0.1:{port}",
            $"--StreamSpace:Database={direct.Scheme}://{direct.UserInfo}@127.0.0.1:{proxy.Port}{direct.AbsolutePath}",
            $"--StreamSpace:DataFolder={data}",
            $"--StreamSpace:AdminPassword={ControlPlaneFixture.AdminPassword}",
            "--StreamSpace:EmbeddedAgent=false",
            "--Logging:LogLevel:Default=Warning",
        ]);
        app.Services.GetRequiredService<IOptions<SocketTransportOptions>>().Value.Backlog.ShouldBe(EarlyListeners.AcceptBacklog);
        var starting = app.StartAsync(ct);
        try
        {
            // Nothing of the app runs yet, and still the connection is taken (without the early socket: refused).
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, ct);
            var stream = client.GetStream();
            await stream.WriteAsync("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"u8.ToArray(), ct);
            await Task.Delay(TimeSpan.FromMilliseconds(300), ct);
            starting.IsCompleted.ShouldBeFalse("start-up still waits for the database");

            proxy.Restore();
            await starting.WaitAsync(TimeSpan.FromSeconds(30), ct);
            using var reader = new StreamReader(stream, Encoding.ASCII);
            var response = await reader.ReadToEndAsync(ct).WaitAsync(TimeSpan.FromSeconds(30), ct);
            response.ShouldStartWith("HTTP/1.1 200");
        }
        finally
        {
            proxy.Restore();
            try { await starting.WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None); } catch (Exception) when (!starting.IsCompletedSuccessfully) { }
            await app.StopAsync(CancellationToken.None);
            try { Directory.Delete(data, recursive: true); } catch (IOException) { }
        }
    }

    [Fact]
    public void Only_ip_literal_fixed_port_addresses_are_opened_early_and_what_kestrel_does_not_take_is_closed()
    {
        var taken = FreePort();
        var left = FreePort();
        using var early = EarlyListeners.Open($"http://localhost:{FreePort()}; http://127.0.0.1:0 ;not a url;http://127.0.0.1:{taken};http://127.0.0.1:{left}");
        early.Pending.ShouldBe([new IPEndPoint(IPAddress.Loopback, taken), new IPEndPoint(IPAddress.Loopback, left)], ignoreOrder: true);

        using var socket = early.CreateBoundListenSocket(new IPEndPoint(IPAddress.Loopback, taken));
        ((IPEndPoint)socket.LocalEndPoint!).Port.ShouldBe(taken);
        early.Pending.ShouldBe([new IPEndPoint(IPAddress.Loopback, left)]);
        using (var client = new TcpClient())
            client.Connect(IPAddress.Loopback, taken); // already listening: Kestrel gets a socket with connections waiting

        early.Dispose();
        early.Pending.ShouldBeEmpty();
        using var refused = new TcpClient();
        Should.Throw<SocketException>(() => refused.Connect(IPAddress.Loopback, left)).SocketErrorCode.ShouldBe(SocketError.ConnectionRefused);
    }

    [Fact]
    public void An_address_in_use_ends_the_start_before_anything_else_runs()
    {
        using var occupant = new TcpListener(IPAddress.Loopback, 0);
        occupant.Start();
        var url = $"http://127.0.0.1:{((IPEndPoint)occupant.LocalEndpoint).Port}";
        var free = FreePort();
        var error = Should.Throw<ListenAddressInUseException>(() => EarlyListeners.Open($"http://127.0.0.1:{free};{url}"));
        error.Url.ShouldBe(url);
        error.Message.ShouldBe($"Cannot listen on {url}: the address is already in use (another StreamSpace control plane, or another " +
            "program, listens there). Stop it, or choose another address with STREAMSPACE_URLS.");
        // What was opened before it is closed again.
        using var refused = new TcpClient();
        Should.Throw<SocketException>(() => refused.Connect(IPAddress.Loopback, free)).SocketErrorCode.ShouldBe(SocketError.ConnectionRefused);
    }
}
