using System.Diagnostics;
using System.Net;
using Dapper;
using Microsoft.Extensions.Logging;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Tests.Hub;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

/// <summary>The control plane on PostgreSQL behind a <see cref="TcpProxy"/> that can cut the database away.</summary>
public sealed class ProxiedPostgresControlPlane() : ControlPlaneFixture(DatabaseKind.Postgres)
{
    private TcpProxy? _proxy;

    public TcpProxy Proxy => _proxy ?? throw new InvalidOperationException("Not initialized");

    /// <summary>
    /// Log categories of the background loops that use the database every second or so, even when nothing happens; the
    /// hub's is that of each connected agent's reconciliation (every <see cref="ReconcileInterval"/>).
    /// </summary>
    public static readonly string[] OutageLoggingLoops =
    [
        "StreamSpace.ControlPlane.Commands.CommandDelivery",
        "StreamSpace.ControlPlane.Agents.Hub.AgentLivenessMonitor",
        "StreamSpace.ControlPlane.Agents.Hub.AgentHub",
    ];

    public static readonly TimeSpan ReconcileInterval = TimeSpan.FromSeconds(2);

    /// <summary>The category API requests log a database outage under (<see cref="RequestOutageLog"/>).</summary>
    public const string RequestOutageCategory = "StreamSpace.Database";

    /// <summary>Everything the app logs (at the fixture's level, warnings and up; Information for <see cref="OutageLoggingLoops"/>).</summary>
    public CapturedLog Log { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<ILoggerProvider>(Log);

    /// <summary>Read once by the base fixture after it created the database: point the app at the proxy.</summary>
    protected override IEnumerable<string> ExtraArgs
    {
        get
        {
            var direct = new Uri(Database.Setting);
            _proxy ??= new TcpProxy(direct.Host, direct.Port);
            return
            [
                $"--StreamSpace:Database={direct.Scheme}://{direct.UserInfo}@127.0.0.1:{_proxy.Port}{direct.AbsolutePath}",
                $"--StreamSpace:ReconcileInterval={ReconcileInterval:c}",
                // The loops' "database reachable again" is Information.
                .. OutageLoggingLoops.Select(loop => $"--Logging:LogLevel:{loop}=Information"),
                // Requests' outage failures past the first are Debug: captured, to see that each is still logged.
                $"--Logging:LogLevel:{RequestOutageCategory}=Debug",
            ];
        }
    }

    /// <summary>Registers an agent directly in the agents table and connects it as a scripted agent (heartbeating).</summary>
    public async Task<ScriptedAgent> OnlineAgentAsync(string prefix)
    {
        var agentId = Unique(prefix);
        var token = AgentTokens.Generate();
        var now = DateTimeOffset.UtcNow;
        await using (var conn = await Db.OpenAsync(CancellationToken.None))
        {
            await conn.ExecuteAsync(
                """
                INSERT INTO agents (agent_id, token_hash, status, platform, region, max_sessions, active_sessions, draining, created_at, updated_at)
                VALUES (@agentId, @hash, @offline, 'process', 'default', 10, 0, @no, @now, @now)
                """,
                new { agentId, hash = AgentTokens.Hash(token), offline = AgentStatus.Offline, no = false, now });
        }
        return await ScriptedAgent.OnlineAsync(BaseAddress, agentId, token);
    }

    public override async ValueTask DisposeAsync()
    {
        _proxy?.Restore();
        await base.DisposeAsync();
        if (_proxy is not null) await _proxy.DisposeAsync();
    }
}

/// <summary>
/// A database outage is a clear 503, fast, and the control plane recovers by itself when the database
/// is back: no restart, no stuck pool of dead connections.
/// </summary>
public sealed class OpsDatabaseOutageTests(ProxiedPostgresControlPlane cp) : IClassFixture<ProxiedPostgresControlPlane>
{
    private static readonly TimeSpan MaxAnswerTime = TimeSpan.FromSeconds(10);

    private static async Task<(HttpResponseMessage Response, TimeSpan Took)> TimedGetAsync(HttpClient client, string path)
    {
        var watch = Stopwatch.StartNew();
        var response = await client.GetAsync(path, TestContext.Current.CancellationToken);
        return (response, watch.Elapsed);
    }

    [Fact]
    public async Task Readyz_and_api_are_503_while_the_database_is_cut_and_200_after_restore()
    {
        var (user, _, token) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("outage"));
        var client = cp.Client();
        // Warm the pool so that the cut also has live pooled connections to break.
        for (var i = 0; i < 3; i++)
        {
            (await client.GetAsync("/readyz", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
            (await user.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        }

        cp.Proxy.Cut();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var (ready, readyTook) = await TimedGetAsync(client, "/readyz");
                var readyText = await ready.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
                await ready.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
                readyTook.ShouldBeLessThan(MaxAnswerTime);
                ShouldNotTellTheDatabase(readyText);

                var (me, meTook) = await TimedGetAsync(user, "/api/v1/users/me");
                await me.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
                me.Headers.RetryAfter.ShouldNotBeNull();
                meTook.ShouldBeLessThan(MaxAnswerTime);

                var (login, loginTook) = await TimedPostLoginAsync(client);
                await login.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
                loginTook.ShouldBeLessThan(MaxAnswerTime);
            }
        }
        finally
        {
            cp.Proxy.Restore();
        }

        // The very first requests after the restore must already succeed: no dead pooled connection is reused.
        (await client.GetAsync("/readyz", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var again = await (await user.GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).ShouldBeJsonAsync(HttpStatusCode.OK);
        again.GetProperty("role").GetString().ShouldBe("user");
        (await cp.Client(token).GetAsync("/api/v1/users/me", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await cp.LoginAsync("admin", ControlPlaneFixture.AdminPassword);
    }

    [Fact]
    public async Task A_database_outage_is_logged_once_per_loop_without_stack_traces_and_its_end_once_it_is_over()
    {
        // Before, every loop logged an Error with the whole stack on every pass: a 20 s outage was 41 lines of 2-6 KB, none
        // saying the database was away. Each connected agent's reconciliation (here every 2 s) did so longest.
        (await cp.Client().GetAsync("/readyz", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        await using var agent = await cp.OnlineAgentAsync("outage-log");
        // Its reconciliation has reached the database before the cut, so the warning below is the outage's.
        await Task.Delay(ProxiedPostgresControlPlane.ReconcileInterval * 1.5, TestContext.Current.CancellationToken);
        var cutAt = cp.Log.Entries.Count;
        int restoredAt;
        cp.Proxy.Cut();
        try
        {
            // Two passes of the slowest loop (the sweep of silent agents, every 5 s), ten of command delivery's poll, five of
            // the agent's reconciliation.
            await Task.Delay(TimeSpan.FromSeconds(11), TestContext.Current.CancellationToken);
        }
        finally
        {
            restoredAt = cp.Log.Entries.Count;
            cp.Proxy.Restore();
        }

        bool Back(string loop) => cp.Log.Entries.Skip(restoredAt).Any(e => e.Category == loop && e.Message.Contains("database reachable again"));
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (!ProxiedPostgresControlPlane.OutageLoggingLoops.All(Back) && DateTime.UtcNow < until)
            await Task.Delay(100, TestContext.Current.CancellationToken);

        var logged = cp.Log.Entries.Skip(cutAt).ToList();
        foreach (var loop in ProxiedPostgresControlPlane.OutageLoggingLoops)
        {
            var lines = logged.Where(e => e.Category == loop).ToList();
            var said = string.Join("\n", lines.Select(e => $"{e.Level}: {e.Message}{(e.Exception is null ? "" : " + stack trace")}"));
            lines.ShouldNotContain(e => e.Exception != null, $"{loop} logged a stack trace for an outage:\n{said}");
            lines.ShouldNotContain(e => e.Level >= LogLevel.Error, $"{loop}:\n{said}");
            // Per loop (a category may hold several, e.g. the heartbeat flush and the sweep): one warning, one "back".
            var down = lines.Where(e => e.Message.Contains(": database unreachable: ")).ToList();
            down.ShouldNotBeEmpty($"{loop} never said the database is unreachable:\n{said}");
            down.ShouldAllBe(e => e.Level == LogLevel.Warning && e.Message.Contains("retrying every"), $"{loop}:\n{said}");
            down.GroupBy(LoopOf).ShouldAllBe(g => g.Count() == 1, $"{loop}:\n{said}");
            // Nothing else at Warning but the sweep's one notice that it waits after the outage (event 3013), which comes
            // when its next pass runs before every loop here said the database is back.
            lines.Where(e => e.Level == LogLevel.Warning && !down.Contains(e))
                .ShouldAllBe(e => e.Message.StartsWith("The database answers again after an outage", StringComparison.Ordinal), $"{loop}:\n{said}");
            var back = lines.Where(e => e.Message.Contains(": database reachable again")).ToList();
            back.ShouldNotBeEmpty($"{loop}:\n{said}");
            back.GroupBy(LoopOf).ShouldAllBe(g => g.Count() == 1, $"{loop}:\n{said}");
            back.ShouldAllBe(e => e.Level == LogLevel.Information, $"{loop}:\n{said}");
            back.ShouldAllBe(e => down.Any(d => LoopOf(d) == LoopOf(e)), $"{loop} said the database is back for a loop that never said it was away:\n{said}");
            back.ShouldAllBe(e => logged.IndexOf(e) >= restoredAt - cutAt, $"{loop} said the database is back before it was:\n{said}");
        }
        var hub = logged.Where(e => e.Category == ProxiedPostgresControlPlane.OutageLoggingLoops[^1] && e.Level == LogLevel.Warning).ToList();
        hub.ShouldHaveSingleItem().Message.ShouldStartWith($"Reconciliation of agent {agent.AgentId}: database unreachable: ");
        agent.IsOpen.ShouldBeTrue($"the agent's socket was closed: {agent.CloseDescription}");
    }

    [Fact]
    public async Task Api_requests_during_an_outage_log_at_most_a_warning_without_stack_traces_and_answer_the_same_503()
    {
        // Before, each request logged a Warning with the whole stack: a busy API filled the log during an outage.
        var (user, _, _) = await cp.CreateUserAsync(ControlPlaneFixture.Unique("outage-req"));
        (await user.GetAsync("/api/v1/sessions", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var paths = Enumerable.Range(0, 20).Select(i => i % 2 == 0 ? "/api/v1/users/me" : "/api/v1/sessions").ToList();
        var cutAt = cp.Log.Entries.Count;
        cp.Proxy.Cut();
        try
        {
            // Concurrent, as on a busy API.
            var answers = await Task.WhenAll(paths.Select(path => user.GetAsync(path, TestContext.Current.CancellationToken)));
            foreach (var answer in answers)
            {
                var error = await answer.ShouldBeErrorAsync(HttpStatusCode.ServiceUnavailable);
                error.GetProperty("error").GetString().ShouldBe("Database unavailable");
                error.GetProperty("message").GetString().ShouldBe("The database cannot be reached right now; try again shortly.");
                answer.Headers.RetryAfter?.Delta.ShouldBe(TimeSpan.FromSeconds(5));
            }
        }
        finally
        {
            cp.Proxy.Restore();
        }
        (await user.GetAsync("/api/v1/sessions", TestContext.Current.CancellationToken)).StatusCode.ShouldBe(HttpStatusCode.OK);

        var logged = cp.Log.Entries.Skip(cutAt)
            .Where(e => e.Category == ProxiedPostgresControlPlane.RequestOutageCategory && e.Message.StartsWith("Database unavailable while serving /api/", StringComparison.Ordinal))
            .ToList();
        var said = string.Join("\n", logged.Select(e => $"{e.Level}: {e.Message}{(e.Exception is null ? "" : " + stack trace")}"));
        logged.Count.ShouldBe(paths.Count, $"each failed request is logged (Warning or Debug):\n{said}");
        logged.ShouldNotContain(e => e.Exception != null, $"a request logged a stack trace for an outage:\n{said}");
        logged.Count(e => e.Level == LogLevel.Warning).ShouldBeLessThanOrEqualTo(2, said);
        logged.ShouldAllBe(e => e.Level == LogLevel.Warning || e.Level == LogLevel.Debug, said);
        // Nor elsewhere: reading the token's user row failed first, and JwtBearerHandler logged that as an Error with its stack.
        var traces = cp.Log.Entries.Skip(cutAt).Where(e => e.Level >= LogLevel.Warning && e.Exception is not null).ToList();
        traces.ShouldBeEmpty(string.Join("\n", traces.Select(e => $"{e.Level} {e.Category}: {e.Message}")));
    }

    /// <summary>The loop a <see cref="DatabaseOutageLog"/> line is about ("Heartbeat flush: database unreachable: …").</summary>
    private static string LoopOf((LogLevel, string, string Message, Exception?) e) => e.Message[..e.Message.IndexOf(": database ", StringComparison.Ordinal)];

    /// <summary>
    /// <c>/readyz</c> is anonymous: its answer must not name the database's host, port or user, nor carry the driver's
    /// exception text (which does, e.g. "Failed to connect to 127.0.0.1:…"). The operator reads that in the log instead.
    /// </summary>
    private void ShouldNotTellTheDatabase(string body)
    {
        var database = new Uri(cp.Database.Setting);
        var user = Uri.UnescapeDataString(database.UserInfo.Split(':')[0]);
        foreach (var secret in (string[])[database.Host, "127.0.0.1", $":{cp.Proxy.Port}", $":{database.Port}", user])
            body.ShouldNotContain(secret, Case.Insensitive, $"/readyz tells an anonymous client about the database: {body}");

        var logged = cp.Log.Entries.Where(e => e.Level >= LogLevel.Warning && e.Exception is not null && e.Message.Contains("/readyz")).ToList();
        logged.ShouldNotBeEmpty("the database outage behind /readyz is not logged with its exception");
        foreach (var entry in logged)
            for (var ex = entry.Exception; ex is not null; ex = ex.InnerException)
                if (ex.Message.Length > 0)
                    body.ShouldNotContain(ex.Message, Case.Sensitive, $"/readyz answers the exception text: {body}");
    }

    private static async Task<(HttpResponseMessage, TimeSpan)> TimedPostLoginAsync(HttpClient client)
    {
        var watch = Stopwatch.StartNew();
        var response = await client.PostRawAsync("/api/v1/auth/login", """{"username":"admin","password":"whatever-123"}""");
        return (response, watch.Elapsed);
    }
}
