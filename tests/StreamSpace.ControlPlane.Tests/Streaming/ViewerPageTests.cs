using Microsoft.Extensions.Configuration;
using System.Net;
using StreamSpace.Agent.Streaming;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.Protocol;

namespace StreamSpace.ControlPlane.Tests.Streaming;

/// <summary>The viewer page shell and its assets (noVNC copied from npm at build time), served without sign-in.</summary>
public sealed class ViewerPageTests(StreamingSqliteControlPlane cp) : IClassFixture<StreamingSqliteControlPlane>
{
    [Fact]
    public async Task The_page_is_served_anonymously_without_caching_and_with_a_same_origin_CSP()
    {
        using var response = await cp.Client().GetAsync("/sessions/alice-xterm-abcdef/view");
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("text/html");
        response.Headers.CacheControl!.NoStore.ShouldBeTrue();
        response.Headers.GetValues("Content-Security-Policy").Single().ShouldContain("default-src 'self'");
        var html = await response.Content.ReadAsStringAsync();
        html.ShouldContain("/viewer/viewer.js");
        html.ShouldNotContain("http://");
        html.ShouldNotContain("https://"); // nothing from a CDN
    }

    [Theory]
    [InlineData("/viewer/viewer.js", "text/javascript")]
    [InlineData("/viewer/viewer.css", "text/css")]
    [InlineData("/viewer/novnc/core/rfb.js", "text/javascript")]
    [InlineData("/viewer/novnc/core/util/browser.js", "text/javascript")]
    [InlineData("/viewer/novnc/vendor/pako/lib/zlib/inflate.js", "text/javascript")]
    public async Task Viewer_assets_including_noVNC_are_served(string path, string contentType)
    {
        using var response = await cp.Client().GetAsync(path);
        response.StatusCode.ShouldBe(HttpStatusCode.OK, path);
        response.Content.Headers.ContentType!.MediaType.ShouldBe(contentType);
        (await response.Content.ReadAsStringAsync()).Length.ShouldBeGreaterThan(100);
    }

    [Theory]
    [InlineData("/viewer/nope.js")]
    [InlineData("/viewer/..%2F..%2FStreamSpace.ControlPlane.dll")]
    [InlineData("/viewer/%2Fetc%2Fpasswd")]
    public async Task Unknown_assets_and_paths_leaving_the_viewer_folder_are_404(string path)
    {
        using var response = await cp.Client().GetAsync(path);
        response.StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public void The_viewer_script_uses_the_ticket_flow_and_never_puts_the_token_in_a_URL()
    {
        var script = File.ReadAllText(Path.Combine(ViewerPage.ViewerRoot(), "viewer.js"));
        script.ShouldContain("/viewer-ticket");
        script.ShouldContain("'streamspace.token'");
        script.ShouldContain("credentials: 'same-origin'");
        script.ShouldContain("clipboardPasteFrom");
        script.ShouldContain("resizeSession = true");
        script.ShouldNotContain("access_token");
    }

    [Theory]
    [InlineData("http://127.0.0.1:8000", "/api/v1/agents/streams/abc", "ws://127.0.0.1:8000/api/v1/agents/streams/abc")]
    [InlineData("https://streamspace.example/", "/api/v1/agents/streams/abc", "wss://streamspace.example/api/v1/agents/streams/abc")]
    [InlineData("https://proxy.example/streamspace/", "/api/v1/agents/streams/abc", "wss://proxy.example/streamspace/api/v1/agents/streams/abc")]
    public void The_agent_dials_ws_or_wss_derived_from_the_control_plane_URL(string baseUrl, string dataPath, string expected) =>
        StreamBridge.DataUri(new Uri(baseUrl), dataPath).ToString().ShouldBe(expected);

    [Theory]
    [InlineData("http://127.0.0.7:8000/api/v1/agents/streams/abc", "ws://127.0.0.7:8000/api/v1/agents/streams/abc")]
    [InlineData("https://replica-2.example/streamspace/api/v1/agents/streams/abc", "wss://replica-2.example/streamspace/api/v1/agents/streams/abc")]
    public void The_agent_dials_the_replicas_own_data_url_when_the_control_plane_sends_one(string dataUrl, string expected) =>
        StreamBridge.DataUri(new Uri("https://load-balancer.example/"), new StreamOpenArgs { StreamId = "abc", DataPath = "/api/v1/agents/streams/abc", DataUrl = dataUrl, Token = "t" })
            .ToString().ShouldBe(expected);

    [Fact]
    public void A_replica_url_gives_the_absolute_data_url_and_none_gives_none()
    {
        new StreamingOptions { ReplicaUrl = "http://127.0.0.7:8000/" }.DataUrl("/api/v1/agents/streams/s1").ShouldBe("http://127.0.0.7:8000/api/v1/agents/streams/s1");
        new StreamingOptions { ReplicaUrl = "https://replica-2.example/base" }.DataUrl("/api/v1/agents/streams/s1").ShouldBe("https://replica-2.example/base/api/v1/agents/streams/s1");
        new StreamingOptions().DataUrl("/api/v1/agents/streams/s1").ShouldBeNull();
    }

    [Fact]
    public void A_refused_replica_url_or_origin_is_repeated_without_its_password()
    {
        var errors = new StreamingOptions { ReplicaUrl = "ftp://ops:s3cret@127.0.0.7/", AllowedOrigins = ["https://ops:s3cret@ui.example/x"] }.Validate().ToList();
        errors.Count.ShouldBe(2);
        errors.ShouldAllBe(e => !e.Contains("s3cret"));
        errors[0].ShouldEndWith("got 'https://ops:***@ui.example/x'");
        errors[1].ShouldEndWith("got 'ftp://ops:***@127.0.0.7/'");
    }

    [Theory]
    [InlineData("ReplicaUrl", "127.0.0.7:8000")]
    [InlineData("ReplicaUrl", "ftp://127.0.0.7/")]
    [InlineData("ReplicaUrl", "http://127.0.0.7:8000/?x=1")]
    [InlineData("TicketLifetime", "00:01:01")]
    [InlineData("DataTokenLifetime", "00:00:31")]
    [InlineData("RendezvousTimeout", "00:00:00")]
    [InlineData("AllowedOrigins:0", "not an origin")]
    [InlineData("CloseTimeout", "60.00:00:00")]
    [InlineData("ActivityFlushInterval", "60.00:00:00")]
    [InlineData("StreamOpenCommandTtl", "3650000.00:00:00")]
    public void Streaming_options_are_validated(string key, string value)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection([new($"Streaming:{key}", value)]).Build();
        var options = new StreamingOptions();
        config.GetSection("Streaming").Bind(options);
        options.Validate().ShouldNotBeEmpty();
        new StreamingOptions().Validate().ShouldBeEmpty();
    }
}
