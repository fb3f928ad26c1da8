using System.Net;
using Microsoft.AspNetCore.Http;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Time.Testing;
using StreamSpace.ControlPlane.Identity;
using StreamSpace.ControlPlane.Web;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Hosting;

/// <summary>Browser sign-in against the real control plane: cookie flags, antiforgery, redirects, roles.</summary>
public sealed partial class SignInTests(WebHostFixture host) : IClassFixture<WebHostFixture>
{
    [Theory]
    [InlineData("/")]
    [InlineData("/sessions")]
    [InlineData("/admin/users")]
    public async Task A_signed_out_browser_is_sent_to_sign_in_and_told_where_to_return(string page)
    {
        using var browser = host.Browser();
        using var response = await browser.Http.GetAsync(page);
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe($"/signin?returnUrl={Uri.EscapeDataString(page)}");
    }

    [Fact]
    public async Task The_site_icon_is_served_to_a_signed_out_browser_not_sent_to_sign_in()
    {
        // Every browser asks for /favicon.ico on its own, before anyone signs in; it used to get the sign-in redirect.
        using var browser = host.Browser();
        using var response = await browser.Http.GetAsync("/favicon.ico");
        response.StatusCode.ShouldBe(HttpStatusCode.OK);
        response.Content.Headers.ContentType?.MediaType.ShouldBe("image/x-icon");
        var icon = await response.Content.ReadAsByteArrayAsync();
        icon[..4].ShouldBe(new byte[] { 0, 0, 1, 0 }, "an ICO file's header");
    }

    [Fact]
    public async Task Redirects_to_sign_in_and_to_denied_keep_the_browsers_scheme_and_host()
    {
        // Behind a TLS-terminating proxy the request arrives as http under the public host name: a Location built from
        // it (http://streamspace.example/…) would take the browser off https. A relative one keeps the browser's own.
        using var browser = host.Browser();
        using var signIn = await browser.Http.SendAsync(Proxied("/sessions"));
        signIn.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        signIn.Headers.Location!.OriginalString.ShouldBe("/signin?returnUrl=%2Fsessions");

        var name = WebHostFixture.Unique("proxied");
        await host.CreateUserAsync(name);
        (await browser.SignInAsync(name, WebHostFixture.UserPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        using var denied = await browser.Http.SendAsync(Proxied("/admin/users"));
        denied.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        denied.Headers.Location!.OriginalString.ShouldBe("/denied?returnUrl=%2Fadmin%2Fusers");

        static HttpRequestMessage Proxied(string path)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Host = "streamspace.example";
            request.Headers.Add("X-Forwarded-Proto", "https");
            return request;
        }
    }

    [Fact]
    public async Task Sign_in_sets_an_httponly_samesite_strict_cookie_without_the_token_in_clear_and_returns_to_the_page()
    {
        var name = WebHostFixture.Unique("alice");
        await host.CreateUserAsync(name);
        using var browser = host.Browser();

        using var response = await browser.SignInAsync(name, WebHostFixture.UserPassword, "/sessions");

        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe("/sessions");
        var cookie = response.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));
        cookie.ShouldContain("httponly", Case.Insensitive);
        cookie.ShouldContain("samesite=strict", Case.Insensitive);
        cookie.ShouldNotContain("secure;", Case.Insensitive); // plain HTTP here; Secure follows the request
        // A JWT in clear starts with its encoded header, {"alg":… = eyJhbGciOi: the ticket is encrypted, never the token in
        // clear. (Case-sensitive and the whole header prefix: "eyJ" alone, compared ignoring case, turns up by chance in
        // about one encrypted ticket in thirty, and failed a full run so.)
        cookie.ShouldNotContain("eyJhbGciOi", Case.Sensitive);

        var page = await browser.Http.GetStringAsync("/sessions");
        page.ShouldContain("<h1>My sessions</h1>");
        page.ShouldContain(name);
    }

    [Fact]
    public async Task A_wrong_password_returns_to_sign_in_with_a_sentence_and_keeps_the_return_address()
    {
        using var browser = host.Browser();
        using var response = await browser.SignInAsync("admin", "not-the-password", "/admin");
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        var location = response.Headers.Location!.OriginalString;
        location.ShouldStartWith("/signin?error=invalid&returnUrl=%2Fadmin");
        response.Headers.TryGetValues("Set-Cookie", out var cookies).ShouldBe(cookies is not null);
        (cookies ?? []).ShouldNotContain(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));

        var page = await browser.Http.GetStringAsync(location);
        page.ShouldContain("The username or password is wrong, or the account is disabled.");
        page.ShouldContain("value=\"/admin\"");
    }

    [Fact]
    public async Task A_sign_in_post_without_the_antiforgery_token_is_refused()
    {
        using var browser = host.Browser();
        using var response = await browser.Http.PostAsync("/signin", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Username"] = "admin",
            ["Password"] = WebHostFixture.AdminPassword,
        }));
        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        response.Headers.TryGetValues("Set-Cookie", out var cookies);
        (cookies ?? []).ShouldNotContain(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("a=1")]
    [InlineData("=")]
    [InlineData("%ff=1")]
    public async Task A_sign_in_post_with_none_of_the_forms_fields_is_a_400_not_a_500(string body)
    {
        using var browser = host.Browser();
        using var response = await browser.Http.PostAsync("/signin", new StringContent(body, System.Text.Encoding.UTF8, "application/x-www-form-urlencoded"));
        response.StatusCode.ShouldBe(HttpStatusCode.BadRequest, await response.Content.ReadAsStringAsync());
        (await response.Content.ReadAsStringAsync()).ShouldContain("antiforgery token");
    }

    [Theory]
    [InlineData(null)]
    [InlineData("application/json")]
    [InlineData("text/plain")]
    public async Task A_sign_in_post_without_a_form_is_a_415_saying_what_it_takes(string? contentType)
    {
        // The sign-in page's own endpoint answered these with an empty 400 page.
        using var browser = host.Browser();
        using var content = contentType is null ? null : new StringContent("""{"username":"admin"}""", System.Text.Encoding.UTF8, contentType);
        using var response = await browser.Http.PostAsync("/signin", content);
        var text = await response.Content.ReadAsStringAsync();
        response.StatusCode.ShouldBe(HttpStatusCode.UnsupportedMediaType, text);
        using var json = System.Text.Json.JsonDocument.Parse(text);
        json.RootElement.GetProperty("error").GetString().ShouldBe("Unsupported media type");
        json.RootElement.GetProperty("message").GetString().ShouldBe(
            "POST /signin takes the sign-in page's form (application/x-www-form-urlencoded); sign in from /signin, or use POST /api/v1/auth/login.");
    }

    [Fact]
    public async Task A_sign_in_post_with_only_a_token_goes_back_to_the_form()
    {
        using var browser = host.Browser();
        var token = await browser.SignInFormTokenAsync();
        using var response = await browser.Http.PostAsync("/signin",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["__RequestVerificationToken"] = token }));
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect, await response.Content.ReadAsStringAsync());
        response.Headers.Location!.OriginalString.ShouldStartWith("/signin?error=missing");
    }

    [Fact]
    public async Task A_sign_in_page_loaded_before_signing_in_elsewhere_goes_on_to_the_return_address()
    {
        var name = WebHostFixture.Unique("tabs");
        await host.CreateUserAsync(name);
        using var browser = host.Browser();
        // Tab one shows the sign-in form (its token made for an anonymous visitor); tab two signs in meanwhile.
        var staleToken = await browser.SignInFormTokenAsync();
        (await browser.SignInAsync(name, WebHostFixture.UserPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);

        using var response = await PostSignInAsync(browser, staleToken, name);

        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe("/sessions");
        (await browser.Http.GetStringAsync("/sessions")).ShouldContain("<h1>My sessions</h1>");
    }

    [Fact]
    public async Task A_sign_in_form_whose_token_no_longer_fits_returns_to_sign_in_with_a_sentence()
    {
        var name = WebHostFixture.Unique("stale");
        await host.CreateUserAsync(name);
        using var browser = host.Browser();
        // A form loaded while signed in, submitted after signing out (in another tab): its token was made for the old sign-in.
        (await browser.SignInAsync(name, WebHostFixture.UserPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        var staleToken = await browser.SignInFormTokenAsync();
        var signOutToken = WebUtility.HtmlDecode(AntiforgeryField().Match(await browser.Http.GetStringAsync("/")).Groups[1].Value);
        using (var signOut = await browser.Http.PostAsync("/signout", new FormUrlEncodedContent(new Dictionary<string, string> { ["__RequestVerificationToken"] = signOutToken })))
            signOut.Headers.Location!.OriginalString.ShouldBe("/signin?signedOut=1");

        using var response = await PostSignInAsync(browser, staleToken, name);

        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        var location = response.Headers.Location!.OriginalString;
        location.ShouldStartWith("/signin?error=stale&returnUrl=%2Fsessions");
        response.Headers.TryGetValues("Set-Cookie", out var cookies);
        (cookies ?? []).ShouldNotContain(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));
        (await browser.Http.GetStringAsync(location)).ShouldContain("The sign-in form had expired; sign in again.");
    }

    [Theory]
    [InlineData("//evil.example/steal", "/")]
    [InlineData("https://evil.example/", "/")]
    [InlineData("/\\evil.example", "/")]
    [InlineData("/a\tb", "/")]
    [InlineData("/a\u0085b", "/")] // a C1 control character
    [InlineData("/a\u007Fb", "/")]
    // A header holds only ASCII: anything else is sent percent-encoded, as the browser would ask for it.
    [InlineData("/é", "/%C3%A9")]
    [InlineData("/%C3%A9", "/%C3%A9")]
    [InlineData("/sessions?user=日本", "/sessions?user=%E6%97%A5%E6%9C%AC")]
    [InlineData("/a b", "/a%20b")]
    [InlineData("/a\u2028b", "/a%E2%80%A8b")]
    [InlineData("/😀", "/%F0%9F%98%80")]
    public async Task The_return_address_must_be_on_this_site_and_is_sent_in_ascii(string returnUrl, string location)
    {
        using var browser = host.Browser();
        using var response = await browser.SignInAsync("admin", WebHostFixture.AdminPassword, returnUrl);
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect, await response.Content.ReadAsStringAsync());
        response.Headers.Location!.OriginalString.ShouldBe(location);
    }

    /// <summary>
    /// No address of this site is longer than a request line Kestrel takes (8 KiB): a longer "return address" is not one of
    /// its pages. It used to go back into the Location header as it was, 100 kB and more, which browsers and proxies refuse
    /// (HttpClient: "The HTTP response headers length exceeded the set limit of 65536 bytes").
    /// </summary>
    [Theory]
    [InlineData("r", 100_000, "/")]
    [InlineData("é", 50_000, "/")]
    [InlineData("r", 4_000, null)] // long, but an address this site could have: kept
    public async Task A_return_address_longer_than_any_request_line_is_not_kept(string filler, int count, string? location)
    {
        var returnUrl = "/sessions?q=" + string.Concat(Enumerable.Repeat(filler, count));
        using var browser = host.Browser();
        using var response = await browser.SignInAsync("admin", WebHostFixture.AdminPassword, returnUrl);
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe(location ?? returnUrl);

        using var refused = await host.Browser().SignInAsync("admin", "not-the-password", returnUrl);
        refused.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        refused.Headers.Location!.OriginalString.ShouldBe($"/signin?error=invalid&returnUrl={Uri.EscapeDataString(location ?? returnUrl)}&username=admin");
    }

    /// <summary>A pasted page of text in the username field is not echoed back into the Location header (it made 100 kB of it).</summary>
    [Theory]
    [InlineData(100_000, false)]
    [InlineData(64, true)]
    public async Task A_wrong_sign_in_hands_back_the_typed_username_only_when_it_could_be_one(int length, bool echoed)
    {
        var typed = new string('u', length);
        using var browser = host.Browser();
        using var response = await browser.SignInAsync(typed, "not-the-password", "/sessions");
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe("/signin?error=invalid&returnUrl=%2Fsessions" + (echoed ? "&username=" + typed : ""));
    }

    [Fact]
    public async Task A_username_typed_with_capitals_signs_in_as_the_lowercase_user()
    {
        var name = WebHostFixture.Unique("erin");
        await host.CreateUserAsync(name);
        using var browser = host.Browser();

        using var response = await browser.SignInAsync(" " + name.ToUpperInvariant(), WebHostFixture.UserPassword, "/sessions");

        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe("/sessions");
        (await browser.Http.GetStringAsync("/sessions")).ShouldContain(name);
    }

    [Fact]
    public async Task The_username_field_is_left_alone_by_phone_keyboards()
    {
        using var browser = host.Browser();
        var html = await browser.Http.GetStringAsync("/signin");
        var field = Regex.Match(html, "<input id=\"username\"[^>]*>").Value;
        field.ShouldContain("autocapitalize=\"none\"");
        field.ShouldContain("autocorrect=\"off\"");
        field.ShouldContain("spellcheck=\"false\"");
    }

    [Fact]
    public async Task Sign_out_clears_the_cookie()
    {
        using var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        var page = await browser.Http.GetStringAsync("/");
        page.ShouldContain("action=\"/signout\"");
        var token = WebUtility.HtmlDecode(AntiforgeryField().Match(page).Groups[1].Value);

        using var signOut = await browser.Http.PostAsync("/signout", new FormUrlEncodedContent(new Dictionary<string, string> { ["__RequestVerificationToken"] = token }));

        signOut.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        signOut.Headers.Location!.OriginalString.ShouldBe("/signin?signedOut=1");
        using var after = await browser.Http.GetAsync("/");
        after.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        after.Headers.Location!.OriginalString.ShouldBe("/signin?returnUrl=%2F");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_sign_out_post_without_the_antiforgery_token_is_refused_and_keeps_the_cookie(bool form)
    {
        // A post of our own site without the token (a script, a page that lost it): the cookie, no token.
        using var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);

        using var signOut = await browser.Http.PostAsync("/signout",
            form ? new FormUrlEncodedContent(new Dictionary<string, string> { ["x"] = "1" }) : null);

        signOut.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await signOut.Content.ReadAsStringAsync()).ShouldContain("\"message\"");
        signOut.Headers.TryGetValues("Set-Cookie", out var cookies);
        (cookies ?? []).ShouldNotContain(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));
        using var after = await browser.Http.GetAsync("/");
        after.StatusCode.ShouldBe(HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_sign_out_post_from_another_site_carries_no_cookie_and_deletes_none()
    {
        // What a form auto-submitted by another site sends: the sign-in cookie is SameSite=Strict, so the browser leaves
        // it out, and an answer that deleted it would still sign the user out (the browser applies that answer's cookies).
        using var crossSite = host.Browser();

        using var signOut = await crossSite.Http.PostAsync("/signout", new FormUrlEncodedContent(new Dictionary<string, string> { ["x"] = "1" }));

        signOut.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        signOut.Headers.TryGetValues("Set-Cookie", out var cookies);
        (cookies ?? []).ShouldNotContain(c => c.StartsWith(WebAuthentication.CookieName + "=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_browser_no_longer_signed_in_can_still_post_its_sign_out_form()
    {
        // The page's token was made for the sign-in that has ended since (here: signed out in another tab).
        using var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        var token = WebUtility.HtmlDecode(AntiforgeryField().Match(await browser.Http.GetStringAsync("/")).Groups[1].Value);
        var form = new Dictionary<string, string> { ["__RequestVerificationToken"] = token };
        using (var first = await browser.Http.PostAsync("/signout", new FormUrlEncodedContent(form)))
            first.Headers.Location!.OriginalString.ShouldBe("/signin?signedOut=1");

        using var again = await browser.Http.PostAsync("/signout", new FormUrlEncodedContent(form));

        again.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        again.Headers.Location!.OriginalString.ShouldBe("/signin?signedOut=1");
    }

    [Theory]
    [InlineData("/admin")]
    [InlineData("/admin/sessions")]
    [InlineData("/admin/users")]
    [InlineData("/admin/templates")]
    [InlineData("/admin/audit")]
    public async Task A_user_cannot_open_administration_but_an_admin_can(string page)
    {
        var name = WebHostFixture.Unique("bob");
        await host.CreateUserAsync(name);
        using var user = host.Browser();
        (await user.SignInAsync(name, WebHostFixture.UserPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        using var denied = await user.Http.GetAsync(page);
        denied.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        denied.Headers.Location!.OriginalString.ShouldStartWith("/denied?");
        (await user.Http.GetStringAsync(denied.Headers.Location)).ShouldContain("Not allowed");
        (await user.Http.GetStringAsync("/")).ShouldNotContain("href=\"/admin\"");

        using var admin = host.Browser();
        (await admin.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        using var allowed = await admin.Http.GetAsync(page);
        allowed.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await allowed.Content.ReadAsStringAsync()).ShouldContain("<h1>Administration</h1>");
    }

    [Fact]
    public async Task A_user_disabled_after_signing_in_is_sent_back_to_sign_in()
    {
        var name = WebHostFixture.Unique("carol");
        var id = await host.CreateUserAsync(name);
        using var browser = host.Browser();
        (await browser.SignInAsync(name, WebHostFixture.UserPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);
        (await browser.Http.GetAsync("/sessions")).StatusCode.ShouldBe(HttpStatusCode.OK);

        await host.SetDisabledAsync(id, true);

        using var response = await browser.Http.GetAsync("/sessions");
        response.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        response.Headers.Location!.OriginalString.ShouldBe("/signin?returnUrl=%2Fsessions");
    }

    [Fact]
    public void Bearer_is_used_whenever_a_token_is_sent_and_for_api_calls_without_the_cookie()
    {
        WebAuthentication.SelectScheme(Context("/api/v1/sessions")).ShouldBe("Bearer");
        WebAuthentication.SelectScheme(Context("/api/v1/sessions", bearer: true, cookie: true)).ShouldBe("Bearer");
        WebAuthentication.SelectScheme(Context("/sessions", bearer: true)).ShouldBe("Bearer");
        WebAuthentication.SelectScheme(Context("/api/v1/sessions", cookie: true)).ShouldBe(WebAuthentication.CookieScheme);
        WebAuthentication.SelectScheme(Context("/sessions")).ShouldBe(WebAuthentication.CookieScheme);
        WebAuthentication.SelectScheme(Context("/_blazor")).ShouldBe(WebAuthentication.CookieScheme);
    }

    [Fact]
    public async Task Api_calls_with_an_invalid_cookie_get_the_json_401_not_a_redirect()
    {
        using var browser = host.Browser();
        browser.Cookies.Add(host.BaseAddress, new System.Net.Cookie(WebAuthentication.CookieName, "not-a-ticket"));
        // No endpoint matches a path with a file extension, so the default-deny policy applies.
        using var response = await browser.Http.GetAsync("/api/v1/sessions/x.json");
        response.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);
        response.Content.Headers.ContentType!.MediaType.ShouldBe("application/json");
        (await response.Content.ReadAsStringAsync()).ShouldContain("\"error\"");

        using var page = await browser.Http.GetAsync("/sessions");
        page.StatusCode.ShouldBe(HttpStatusCode.Redirect);
    }

    [Fact]
    public async Task A_same_origin_page_may_call_the_api_with_the_cookie_but_not_a_cross_site_write()
    {
        using var browser = host.Browser();
        (await browser.SignInAsync("admin", WebHostFixture.AdminPassword)).StatusCode.ShouldBe(HttpStatusCode.Redirect);

        using var read = await browser.Http.GetAsync("/api/v1/sessions/x.json");
        read.StatusCode.ShouldBe(HttpStatusCode.NotFound); // authorized by the cookie; simply nothing there

        using var crossSite = new HttpRequestMessage(HttpMethod.Post, "/api/v1/sessions/no-such-session/hibernate");
        crossSite.Headers.Add("Origin", "http://evil.example");
        using var refused = await browser.Http.SendAsync(crossSite);
        refused.StatusCode.ShouldBe(HttpStatusCode.Unauthorized);

        using var sameOrigin = new HttpRequestMessage(HttpMethod.Post, "/api/v1/sessions/no-such-session/hibernate");
        sameOrigin.Headers.Add("Origin", host.BaseAddress.GetLeftPart(UriPartial.Authority));
        sameOrigin.Headers.Add("Sec-Fetch-Site", "same-origin");
        using var allowed = await browser.Http.SendAsync(sameOrigin);
        allowed.StatusCode.ShouldBe(HttpStatusCode.NotFound); // authorized: simply no such session

        // Behind a TLS-terminating proxy the browser's origin is https while the request arrives as http: the browser's
        // own Sec-Fetch-Site decides. Without it, the Origin must be this host's.
        using var proxied = new HttpRequestMessage(HttpMethod.Post, "/api/v1/sessions/no-such-session/hibernate");
        proxied.Headers.Add("Origin", "https://" + host.BaseAddress.Authority);
        proxied.Headers.Add("Sec-Fetch-Site", "same-origin");
        (await browser.Http.SendAsync(proxied)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        using var crossSiteBrowser = new HttpRequestMessage(HttpMethod.Post, "/api/v1/sessions/no-such-session/hibernate");
        crossSiteBrowser.Headers.Add("Origin", host.BaseAddress.GetLeftPart(UriPartial.Authority));
        crossSiteBrowser.Headers.Add("Sec-Fetch-Site", "cross-site");
        (await browser.Http.SendAsync(crossSiteBrowser)).StatusCode.ShouldBe(HttpStatusCode.Unauthorized);

        (await browser.Http.GetAsync("/sessions")).StatusCode.ShouldBe(HttpStatusCode.OK); // the sign-in survived
    }

    [Fact]
    public async Task Styles_and_the_blazor_script_are_served_from_a_production_build()
    {
        using var browser = host.Browser();
        var html = await browser.Http.GetStringAsync("/signin");
        var css = Regex.Match(html, "href=\"([^\"]*app[^\"]*\\.css)\"").Groups[1].Value;
        var script = Regex.Match(html, "src=\"([^\"]*blazor\\.web[^\"]*\\.js)\"").Groups[1].Value;
        css.ShouldNotBeEmpty();
        script.ShouldNotBeEmpty();
        using var cssResponse = await browser.Http.GetAsync("/" + css.TrimStart('/'));
        cssResponse.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await cssResponse.Content.ReadAsStringAsync()).ShouldContain(".badge");
        using var scriptResponse = await browser.Http.GetAsync("/" + script.TrimStart('/'));
        scriptResponse.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await scriptResponse.Content.ReadAsByteArrayAsync()).Length.ShouldBeGreaterThan(10_000);
    }

    private static DefaultHttpContext Context(string path, bool bearer = false, bool cookie = false)
    {
        var context = new DefaultHttpContext();
        context.Request.Path = path;
        if (bearer) context.Request.Headers.Authorization = "Bearer abc";
        if (cookie) context.Request.Headers.Cookie = $"{WebAuthentication.CookieName}=ticket";
        return context;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();

    /// <summary>Submits the sign-in form with <paramref name="token"/> as its antiforgery field, asking to return to /sessions.</summary>
    private static Task<HttpResponseMessage> PostSignInAsync(BrowserClient browser, string token, string name) =>
        browser.Http.PostAsync("/signin", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = token,
            ["Username"] = name,
            ["Password"] = WebHostFixture.UserPassword,
            ["ReturnUrl"] = "/sessions",
        }));
}

/// <summary>A control plane whose clock the test moves, to expire sign-ins without waiting.</summary>
public sealed class FakeClockWebHost : WebHostFixture
{
    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<TimeProvider>(Time);
}

public sealed class ExpiredSignInTests(FakeClockWebHost host) : IClassFixture<FakeClockWebHost>
{
    [Fact]
    public async Task An_expired_sign_in_goes_back_to_the_sign_in_page_and_then_to_the_page()
    {
        var name = WebHostFixture.Unique("dave");
        await host.CreateUserAsync(name);
        using var browser = host.Browser();
        using var signedIn = await browser.SignInAsync(name, WebHostFixture.UserPassword);
        signedIn.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        using var first = await browser.Http.GetAsync("/sessions");
        first.StatusCode.ShouldBe(HttpStatusCode.OK, $"sign-in went to {signedIn.Headers.Location}, /sessions to {first.Headers.Location}");

        host.Time.Advance(TimeSpan.FromHours(13)); // past the 12 h token lifetime

        using var expired = await browser.Http.GetAsync("/sessions");
        expired.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        expired.Headers.Location!.OriginalString.ShouldBe("/signin?returnUrl=%2Fsessions");
        using var again = await browser.SignInAsync(name, WebHostFixture.UserPassword, "/sessions");
        again.Headers.Location!.OriginalString.ShouldBe("/sessions");
        (await browser.Http.GetAsync("/sessions")).StatusCode.ShouldBe(HttpStatusCode.OK);
    }
}
