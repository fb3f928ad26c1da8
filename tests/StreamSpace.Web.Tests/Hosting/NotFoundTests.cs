using System.Net;
using System.Net.Http.Headers;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Hosting;

public sealed class NotFoundTests(WebHostFixture host) : IClassFixture<WebHostFixture>
{
    [Fact]
    public async Task A_browser_gets_a_page_in_words_for_an_unknown_address()
    {
        using var browser = host.Browser();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/no/such/page");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/html"));
        using var response = await browser.Http.SendAsync(request);
        response.StatusCode.ShouldBe(HttpStatusCode.NotFound);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("text/html");
        (await response.Content.ReadAsStringAsync()).ShouldContain("Page not found");
    }

    [Theory]
    [InlineData("/api/v1/no-such-thing")]
    [InlineData("/no/such/page")]
    public async Task Api_clients_keep_the_json_404(string path)
    {
        using var browser = host.Browser();
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/html"));
        if (!path.StartsWith("/api", StringComparison.Ordinal))
        {
            request.Headers.Accept.Clear();
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        }
        using var response = await browser.Http.SendAsync(request);
        response.StatusCode.ShouldBe(HttpStatusCode.NotFound);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("application/json");
        (await response.Content.ReadAsStringAsync()).ShouldContain("\"error\"");
    }
}
