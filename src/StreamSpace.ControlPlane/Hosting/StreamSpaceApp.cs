using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Agents;
using StreamSpace.ControlPlane.Agents.Hub;
using StreamSpace.ControlPlane.Audit;
using StreamSpace.ControlPlane.Commands;
using StreamSpace.ControlPlane.Data;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Ops;
using StreamSpace.ControlPlane.Sessions;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.ControlPlane.Templates;
using StreamSpace.ControlPlane.Web;

namespace StreamSpace.ControlPlane.Hosting;

/// <summary>Composition of the control plane: services, middleware, and every feature's routes in one place.</summary>
public static class StreamSpaceApp
{
    public static WebApplication Build(string[] args, Action<IServiceCollection>? configureServices = null)
    {
        // No configuration reload: options are read once at start-up, and the reload watcher is a recursive inotify watch
        // of the content root (the working folder): 1 300 watches when started in a source checkout, every write below
        // it (a database's files, a build) handled by the control plane, and the whole file system when started in /.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = [.. args, "--hostBuilder:reloadConfigOnChange=false"],
            WebRootPath = PublishedWebRoot(args),
        });
        var options = StreamSpaceOptions.FromConfiguration(builder.Configuration);
        // Parsed now, so a wrong STREAMSPACE_DATABASE (or embedded-agent setting) stops the start before anything runs.
        var database = DatabaseTarget.Parse(options.Database, options.DataFolder);
        // Locked now, before this control plane listens or starts its loops: a second one on the same data folder (a second
        // ./run.sh) ends here, with one line, rather than after it answered requests and swept the first one's database.
        var embeddedAgentFolder = options.EmbeddedAgent ? Agents.Embedded.EmbeddedAgentFolder.Claim(options, builder.Configuration) : null;
        try
        {
            return Compose(builder, options, database, embeddedAgentFolder, configureServices);
        }
        catch
        {
            embeddedAgentFolder?.Dispose();
            throw;
        }
    }

    private static WebApplication Compose(WebApplicationBuilder builder, StreamSpaceOptions options, DatabaseTarget database,
        Agents.Embedded.EmbeddedAgentFolder? embeddedAgentFolder, Action<IServiceCollection>? configureServices)
    {
        var urls = builder.Configuration["urls"];
        var urlsSetting = "the listen address (--urls, ASPNETCORE_URLS)";
        if (urls is null && builder.Configuration["STREAMSPACE_URLS"] is { Length: > 0 } streamSpaceUrls)
        {
            urlsSetting = "STREAMSPACE_URLS";
            builder.WebHost.UseUrls(urls = streamSpaceUrls);
        }
        else if (urls is null && builder.Configuration["ASPNETCORE_URLS"] is null)
            builder.WebHost.UseUrls(urls = "http://127.0.0.1:8000");
        var listen = urls ?? builder.Configuration["ASPNETCORE_URLS"];
        if (listen is not null && ListenUrls.Problem(listen) is { } problem)
            throw new StreamSpaceConfigurationException($"Invalid StreamSpace configuration: {urlsSetting} must be {ListenUrls.Expected}; {problem}");
        // Listen now, so agents reconnecting while the rest starts up wait in the accept queue instead of backing off.
        var early = EarlyListeners.Open(listen ?? "");
        builder.Services.Configure<SocketTransportOptions>(o =>
        {
            o.Backlog = EarlyListeners.AcceptBacklog;
            o.CreateBoundListenSocket = early.CreateBoundListenSocket;
        });

        // ASP.NET Core's own per-request lines (request starting/finished, endpoint executing/executed, result written:
        // four JSON lines for every API call and viewer socket) only from warnings up, as its project templates set it;
        // the lowest-priority source, so Logging__LogLevel__Microsoft.AspNetCore=Information brings them back.
        builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
        {
            InitialData = [new("Logging:LogLevel:Microsoft.AspNetCore", "Warning")],
        });
        builder.Logging.ClearProviders();
        // UTC, as the agent logs and as the audit log records: a "Z" after the host's local time would put every line hours
        // off on a host not set to UTC.
        builder.Logging.AddJsonConsole(o =>
        {
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            o.UseUtcTimestamp = true;
        });
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            // Long addresses are refused by the app with a JSON 414 (RequestTargetLimit), not by Kestrel with a bare one.
            k.Limits.MaxRequestLineSize = RequestTargetLimit.KestrelMaxRequestLine;
        });
        builder.Host.ConfigureHostOptions(h => h.ShutdownTimeout = TimeSpan.FromSeconds(15));

        var services = builder.Services;
        services.AddSingleton(Options.Create(options));
        services.TryAddSingletonTimeProvider();
        services.AddSingleton(_ => new Db(database));
        services.AddSingleton<RequestOutageLog>();
        services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
            o.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
            o.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
            // A body that does not fit is refused naming the field (README): a field given twice ({"role":"user","role":"admin"})
            // is not "the last one wins", and a number sent as text ("maxSessions":"3") is not read as one.
            o.SerializerOptions.AllowDuplicateProperties = false;
            o.SerializerOptions.NumberHandling = JsonNumberHandling.Strict;
        });
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddProblemDetails();
        services.AddOpenApi(o => o.AddOperationTransformer(ApiErrorResponses.DescribeOperationAsync));
        services.AddSingleton<AuditLog>();
        services.AddSingleton<CommandOutbox>();
        services.AddStreamSpaceIdentity();
        services.AddStreamSpaceOps();
        services.AddStreamSpaceTemplates();
        services.AddStreamSpaceSessions();
        services.AddStreamSpaceAgents(options);
        services.AddAgentHub();
        services.AddStreamSpaceStreaming();
        services.AddStreamSpaceWeb();
        services.AddHostedService<StartupInitializer>();
        if (embeddedAgentFolder is not null)
        {
            // Made by a factory, so the container disposes it (an instance given as such it would not).
            services.AddSingleton(_ => embeddedAgentFolder);
            services.AddHostedService<Agents.Embedded.EmbeddedAgentService>();
        }
        configureServices?.Invoke(services);

        var app = builder.Build();
        // Resolved now, so the host's disposal releases the state folder even when it never started.
        if (embeddedAgentFolder is not null) app.Services.GetRequiredService<Agents.Embedded.EmbeddedAgentFolder>();
        // Kestrel took its sockets by now; whatever it did not take (other addresses configured) is closed.
        app.Lifetime.ApplicationStarted.Register(early.Dispose);
        app.UseApiErrorHandling();
        app.UseRequestTargetLimit();
        // Pings with a timeout, not .NET's default unsolicited pongs (which never notice a silent peer): every accepted
        // socket (agent control, agent data, viewer) is aborted once its peer stops answering.
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = options.WebSocketKeepAliveInterval, KeepAliveTimeout = options.WebSocketKeepAliveTimeout });
        app.UseStreamSpaceAuthentication();
        app.UseAuthorization();
        app.UseRepeatedQueryParametersRefused();
        app.UseJsonBodyCharsetChecked();
        app.UseAntiforgery();

        // The API's error answers documented in OpenAPI by the kind of each endpoint, once all of its metadata is there.
        var api = app.MapGroup("");
        ((IEndpointConventionBuilder)api).Finally(ApiErrorResponses.Describe);
        api.MapOpsEndpoints();
        api.MapAuthApi();
        api.MapUsersApi();
        api.MapAuditApi();
        api.MapTemplatesApi();
        api.MapSessionsApi();
        api.MapAgentsApi();
        api.MapAgentHub();
        api.MapStreamSpaceStreaming();
        app.MapStreamSpaceWeb();
        app.MapUnmatchedRequests();
        return app;
    }

    private static void TryAddSingletonTimeProvider(this IServiceCollection services)
    {
        if (!services.Any(d => d.ServiceType == typeof(TimeProvider)))
            services.AddSingleton(TimeProvider.System);
    }

    /// <summary>
    /// The published web root (app.css, blazor.web.js, the icon) next to the program, where <c>dotnet publish</c> puts it.
    /// The default, <c>wwwroot</c> under the current folder, is the checkout when <c>./run.sh</c> starts the published
    /// program from there: every asset was then answered 200 with an empty body and the web UI had no styles. Null (the
    /// default) for a build run from its project, whose assets the runtime manifest maps (WebSetup), or when the operator
    /// chose a web root (<c>--webroot</c>, <c>ASPNETCORE_WEBROOT</c>).
    /// </summary>
    internal static string? PublishedWebRoot(string[] args)
    {
        var published = Path.Combine(AppContext.BaseDirectory, "wwwroot");
        var chosen = Environment.GetEnvironmentVariable("ASPNETCORE_WEBROOT") is { Length: > 0 }
                     || Environment.GetEnvironmentVariable("DOTNET_WEBROOT") is { Length: > 0 }
                     || args.Any(a => a.TrimStart('-', '/').StartsWith("webroot", StringComparison.OrdinalIgnoreCase));
        return !chosen && Directory.Exists(published) ? published : null;
    }
}
