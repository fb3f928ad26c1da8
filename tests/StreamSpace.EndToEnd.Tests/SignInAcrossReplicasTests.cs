using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using StreamSpace.ControlPlane.Data;
using StreamSpace.EndToEnd.Tests.Infrastructure;

namespace StreamSpace.EndToEnd.Tests;

/// <summary>
/// The web UI's sign-in across control-plane processes (design §9: no sticky sessions). The cookie and the forms'
/// antiforgery tokens are encrypted with the Data Protection key ring, which must come from the shared database, not
/// from the host's $HOME: each process here gets a HOME of its own, as two pods or a restarted container do. (In-process
/// hosts share the test runner's HOME, so only processes show it.)
/// </summary>
public sealed partial class SignInAcrossReplicasTests
{
    [Fact]
    public async Task A_cookie_and_a_sign_in_form_from_one_replica_are_accepted_by_another_with_another_home()
    {
        using var homeA = new ScratchFolder("e2e-home-a-");
        using var homeB = new ScratchFolder("e2e-home-b-");
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, env: new() { ["HOME"] = homeA.Path });
        var replicaB = await platform.StartReplicaAsync(new Dictionary<string, string?> { ["HOME"] = homeB.Path });
        var replicaA = platform.BaseAddress;

        // Signed in on A, the next request lands on B.
        using (var browser = new Browser())
        {
            using var signIn = await browser.PostSignInAsync(formFrom: replicaA, postTo: replicaA);
            signIn.Headers.Location!.OriginalString.ShouldBe("/");
            (await browser.MeAsync(replicaA)).ShouldBe("admin");
            (await browser.MeAsync(replicaB.BaseAddress)).ShouldBe("admin");
        }

        // The sign-in page served by A, its form posted to B (its antiforgery token and cookie are A's).
        using (var browser = new Browser())
        {
            using var signIn = await browser.PostSignInAsync(formFrom: replicaA, postTo: replicaB.BaseAddress);
            signIn.Headers.Location!.OriginalString.ShouldBe("/", "the form's token was refused as stale");
            (await browser.MeAsync(replicaA)).ShouldBe("admin");
        }
    }

    [Fact]
    public async Task A_control_plane_restarted_with_a_new_empty_home_still_accepts_the_cookie_it_issued()
    {
        using var firstHome = new ScratchFolder("e2e-home-1-");
        using var secondHome = new ScratchFolder("e2e-home-2-");
        await using var platform = await Platform.StartAsync(DatabaseKind.Postgres, env: new() { ["HOME"] = firstHome.Path });
        using var browser = new Browser();
        using (var signIn = await browser.PostSignInAsync(formFrom: platform.BaseAddress, postTo: platform.BaseAddress))
            signIn.Headers.Location!.OriginalString.ShouldBe("/");

        await platform.ControlPlane!.KillAsync();
        await platform.StartControlPlaneAsync(new Dictionary<string, string?> { ["HOME"] = secondHome.Path });

        (await browser.MeAsync(platform.BaseAddress)).ShouldBe("admin");
    }

    /// <summary>
    /// One browser behind a load balancer: one cookie jar for all replicas (cookies do not tell ports apart, so the
    /// replicas on 127.0.0.1 share it as they would share one origin), no redirects followed.
    /// </summary>
    private sealed class Browser : IDisposable
    {
        private readonly HttpClientHandler _handler = new() { CookieContainer = new CookieContainer(), AllowAutoRedirect = false, UseCookies = true };
        private readonly HttpClient _http;

        public Browser() => _http = new HttpClient(_handler) { Timeout = TimeSpan.FromSeconds(60) };

        /// <summary>Loads the sign-in page from one replica and posts its form, as the admin, to another: expects a redirect.</summary>
        public async Task<HttpResponseMessage> PostSignInAsync(Uri formFrom, Uri postTo)
        {
            var html = await _http.GetStringAsync(new Uri(formFrom, "/signin"));
            var token = AntiforgeryField().Match(html) is { Success: true } m
                ? WebUtility.HtmlDecode(m.Groups[1].Value)
                : throw new InvalidOperationException("The sign-in page has no antiforgery token:\n" + html);
            var response = await _http.PostAsync(new Uri(postTo, "/signin"), new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["__RequestVerificationToken"] = token,
                ["Username"] = "admin",
                ["Password"] = Platform.AdminPassword,
            }));
            response.StatusCode.ShouldBe(HttpStatusCode.Redirect, await response.Content.ReadAsStringAsync());
            return response;
        }

        /// <summary><c>GET /api/v1/users/me</c> with the cookie: the signed-in username, or a failure naming the answer.</summary>
        public async Task<string> MeAsync(Uri replica)
        {
            using var response = await _http.GetAsync(new Uri(replica, "/api/v1/users/me"));
            var text = await response.Content.ReadAsStringAsync();
            response.StatusCode.ShouldBe(HttpStatusCode.OK, $"{replica}: {text}");
            return JsonDocument.Parse(text).RootElement.GetProperty("username").GetString()!;
        }

        public void Dispose()
        {
            _http.Dispose();
            _handler.Dispose();
        }
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\"[^>]*value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}
