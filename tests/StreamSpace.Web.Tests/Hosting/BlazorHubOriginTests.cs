using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using StreamSpace.ControlPlane.Streaming;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Hosting;

/// <summary>
/// The Blazor hub (<c>/_blazor</c>) runs the UI as whoever's cookie comes with the request, so only pages of this
/// control plane may open it: a page on another port of the same host gets the SameSite=Strict cookie sent too
/// (cookies ignore ports) and would otherwise drive the signed-in user's UI.
/// </summary>
public sealed class BlazorHubOriginTests(WebHostFixture host) : IClassFixture<WebHostFixture>
{
    private string OwnOrigin => host.BaseAddress.GetLeftPart(UriPartial.Authority);
    private string OtherPortOrigin => $"http://127.0.0.1:{host.BaseAddress.Port + 1}";

    [Fact]
    public async Task A_page_on_another_port_cannot_open_the_hub_websocket_with_the_cookie_but_the_own_origin_can()
    {
        using var browser = await SignedInAdminAsync();

        var refused = await Assert.ThrowsAsync<WebSocketException>(() => OpenHubSocketAsync(browser, OtherPortOrigin));
        refused.Message.ShouldContain("403");

        using var own = await OpenHubSocketAsync(browser, OwnOrigin);
        own.HttpStatusCode.ShouldBe(HttpStatusCode.SwitchingProtocols);
        own.State.ShouldBe(WebSocketState.Open);
        await own.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
    }

    [Fact]
    public async Task Negotiate_and_every_other_hub_transport_refuse_a_foreign_origin_with_a_json_403()
    {
        using var browser = await SignedInAdminAsync();

        using var negotiate = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", OtherPortOrigin);
        await ShouldBeOriginRefusalAsync(negotiate);
        using var elsewhere = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", "http://evil.example");
        await ShouldBeOriginRefusalAsync(elsewhere);

        using var allowed = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", OwnOrigin);
        allowed.StatusCode.ShouldBe(HttpStatusCode.OK);
        var connectionToken = JsonDocument.Parse(await allowed.Content.ReadAsStringAsync()).RootElement.GetProperty("connectionToken").GetString();
        connectionToken.ShouldNotBeNullOrEmpty();

        // Long polling and server-sent events on a connection the own page negotiated: refused to a foreign origin too.
        using var poll = await SendAsync(browser, HttpMethod.Get, $"/_blazor?id={connectionToken}", OtherPortOrigin);
        await ShouldBeOriginRefusalAsync(poll);
        using var send = await SendAsync(browser, HttpMethod.Post, $"/_blazor?id={connectionToken}", OtherPortOrigin);
        await ShouldBeOriginRefusalAsync(send);
    }

    [Fact]
    public async Task The_browsers_sec_fetch_site_decides_when_it_is_sent()
    {
        using var browser = await SignedInAdminAsync();

        // What a browser sends from a page on another port of this host: same-site, not same-origin.
        using var sameSite = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", OwnOrigin, "same-site");
        await ShouldBeOriginRefusalAsync(sameSite);
        using var crossSite = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", OwnOrigin, "cross-site");
        await ShouldBeOriginRefusalAsync(crossSite);

        // Behind a TLS-terminating proxy the page's https origin arrives as an http request: the browser's word decides.
        using var proxied = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", "https://" + host.BaseAddress.Authority, "same-origin");
        proxied.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_client_that_is_not_a_browser_sends_no_origin_and_is_let_through()
    {
        // Browsers always send Origin on a WebSocket handshake and on a cross-origin or POST fetch; a request without it
        // comes from a program, which can send any Origin it likes anyway (and needs the cookie itself to be anyone).
        using var browser = await SignedInAdminAsync();
        using var negotiate = await SendAsync(browser, HttpMethod.Post, "/_blazor/negotiate?negotiateVersion=1", origin: null);
        negotiate.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    private async Task<BrowserClient> SignedInAdminAsync()
    {
        var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        return browser;
    }

    private async Task<ClientWebSocket> OpenHubSocketAsync(BrowserClient browser, string origin)
    {
        var socket = new ClientWebSocket();
        socket.Options.Cookies = browser.Cookies;
        socket.Options.SetRequestHeader("Origin", origin);
        socket.Options.CollectHttpResponseDetails = true;
        var uri = new UriBuilder(new Uri(host.BaseAddress, "/_blazor")) { Scheme = "ws" }.Uri;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await socket.ConnectAsync(uri, cts.Token);
            return socket;
        }
        catch (WebSocketException e)
        {
            var status = socket.HttpStatusCode;
            socket.Dispose();
            throw new WebSocketException(e.WebSocketErrorCode, $"The handshake was answered {(int)status}.", e);
        }
    }

    private static async Task<HttpResponseMessage> SendAsync(BrowserClient browser, HttpMethod method, string path, string? origin, string? fetchSite = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (method == HttpMethod.Post) request.Content = new StringContent("");
        if (origin is not null) request.Headers.Add("Origin", origin);
        if (fetchSite is not null) request.Headers.Add("Sec-Fetch-Site", fetchSite);
        return await browser.Http.SendAsync(request);
    }

    private static async Task ShouldBeOriginRefusalAsync(HttpResponseMessage response)
    {
        response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("application/json");
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        body.GetProperty("error").GetString().ShouldBe("Origin not allowed");
        body.GetProperty("message").GetString().ShouldNotBeNullOrEmpty();
    }
}

/// <summary>A control plane with one extra allowed origin (what a TLS proxy's public https origin is configured as).</summary>
public sealed class AllowedOriginWebHost : WebHostFixture
{
    public const string PublicOrigin = "https://ui.example";

    protected override void ConfigureServices(IServiceCollection services) =>
        services.PostConfigure<StreamingOptions>(o => o.AllowedOrigins.Add(PublicOrigin));
}

public sealed class AllowedOriginTests(AllowedOriginWebHost host) : IClassFixture<AllowedOriginWebHost>
{
    [Fact]
    public async Task A_configured_allowed_origin_may_open_the_hub_and_no_other()
    {
        using var browser = await SignedInAdminAsync();

        using var allowed = await PostAsync(browser, "/_blazor/negotiate?negotiateVersion=1", AllowedOriginWebHost.PublicOrigin);
        allowed.StatusCode.ShouldBe(HttpStatusCode.OK);
        using var other = await PostAsync(browser, "/_blazor/negotiate?negotiateVersion=1", "https://other.example");
        other.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task A_configured_allowed_origin_may_write_to_the_api_with_the_cookie_and_no_other()
    {
        // The same rule as the hub's: an old browser (no Sec-Fetch-Site) behind a TLS proxy sends the public origin.
        using var browser = await SignedInAdminAsync();

        using var allowed = await PostAsync(browser, "/api/v1/sessions/no-such-session/hibernate", AllowedOriginWebHost.PublicOrigin);
        allowed.StatusCode.ShouldBe(HttpStatusCode.NotFound); // authorized by the cookie; simply no such session
        using var other = await PostAsync(browser, "/api/v1/sessions/no-such-session/hibernate", "https://other.example");
        other.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
    }

    private async Task<BrowserClient> SignedInAdminAsync()
    {
        var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        return browser;
    }

    private static async Task<HttpResponseMessage> PostAsync(BrowserClient browser, string path, string origin)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent("") };
        request.Headers.Add("Origin", origin);
        return await browser.Http.SendAsync(request);
    }
}
