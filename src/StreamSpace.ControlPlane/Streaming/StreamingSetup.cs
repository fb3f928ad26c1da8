using Microsoft.Extensions.Options;

namespace StreamSpace.ControlPlane.Streaming;

/// <summary>Viewer tickets, the agent rendezvous and stream relay, activity recording, and the noVNC viewer page.</summary>
public static class StreamingSetup
{
    public static IServiceCollection AddStreamSpaceStreaming(this IServiceCollection services)
    {
        services.AddOptions<StreamingOptions>().BindConfiguration(StreamingOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<StreamingOptions>, ValidateStreamingOptions>();
        services.AddSingleton<ViewerTicketStore>();
        services.AddSingleton<ViewerAccess>();
        services.AddSingleton<StreamRendezvous>();
        services.AddSingleton<SessionActivity>();
        services.AddSingleton<IStreamOpener, CommandStreamOpener>();
        services.AddHostedService<SessionActivityFlusher>();
        services.AddRelayTransportTuning();
        return services;
    }

    public static IEndpointRouteBuilder MapStreamSpaceStreaming(this IEndpointRouteBuilder routes)
    {
        routes.MapViewerApi();
        routes.MapAgentStreamEndpoint();
        routes.MapViewerPage();
        return routes;
    }

    private sealed class ValidateStreamingOptions : IValidateOptions<StreamingOptions>
    {
        public ValidateOptionsResult Validate(string? name, StreamingOptions options) =>
            options.Validate().ToList() is { Count: > 0 } errors ? ValidateOptionsResult.Fail(errors) : ValidateOptionsResult.Success;
    }
}
