using Microsoft.AspNetCore.Components;
using System.Net;
using StreamSpace.ControlPlane.Web.Components.Pages;
using StreamSpace.Web.Tests.Infrastructure;

namespace StreamSpace.Web.Tests.Components;

/// <summary>My sessions, against canned API JSON (component level).</summary>
public sealed class MySessionsTests_CannedApi : ComponentTest
{
    /// <summary>Every live session (all pages), and separately the newest failures.</summary>
    private const string List = "GET /api/v1/sessions?user=alice&live=true&limit=500";
    private const string Failed = "GET /api/v1/sessions?user=alice&state=failed&limit=20";

    public MySessionsTests_CannedApi() => Api.Fallback(Failed, "[]");

    [Fact]
    public void Shows_each_state_with_its_actions_and_the_failure_reason()
    {
        Api.Answer(List, Json(new[]
        {
            Session("alice-xterm-aaaaaa", "running"),
            Session("alice-xterm-bbbbbb", "hibernated"),
            Session("alice-xterm-dddddd", "pending"),
        }));
        Api.Answer(Failed, Json(new[] { Session("alice-xterm-cccccc", "failed", reason: "Xvnc exited with code 1") }));

        var cut = Render<MySessions>();

        var rows = cut.FindAll("tr[data-session]");
        rows.Select(r => r.GetAttribute("data-state")).ShouldBe(["running", "hibernated", "failed", "pending"], ignoreOrder: true);
        var running = cut.Find("tr[data-session='alice-xterm-aaaaaa']");
        running.QuerySelector("a.button")!.GetAttribute("href").ShouldBe("/sessions/alice-xterm-aaaaaa/view");
        running.TextContent.ShouldContain("Hibernate");
        running.TextContent.ShouldContain("5 min"); // age from createdAt
        cut.Find("tr[data-session='alice-xterm-bbbbbb']").TextContent.ShouldContain("Wake");
        cut.Find("tr[data-session='alice-xterm-bbbbbb']").QuerySelector("a.button").ShouldBeNull();
        cut.Find("tr[data-session='alice-xterm-cccccc']").TextContent.ShouldContain("Xvnc exited with code 1");
        cut.Find("tr[data-session='alice-xterm-dddddd'] .badge").TextContent.ShouldBe("pending");
        // The API is called as the signed-in user, with the token from the cookie ticket.
        Api.RequestsTo(List)[0].Authorization.ShouldBe($"Bearer {Token}");
    }

    [Fact]
    public void Live_sessions_are_read_from_every_page_and_only_the_newest_failures_are_listed()
    {
        // The API pages (Link rel="next"): a live session on the second page must still be shown, however long the
        // history is; of the ended sessions only the newest failures are asked for, and the page says so.
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }),
                link: "</api/v1/sessions?user=alice&live=true&limit=500&after=CURSOR1>; rel=\"next\"")
           .Answer("GET /api/v1/sessions?user=alice&live=true&limit=500&after=CURSOR1", Json(new[] { Session("alice-xterm-bbbbbb", "hibernated") }))
           .Answer(Failed, Json(Enumerable.Range(0, 20).Select(i => Session($"alice-xterm-f{i:00000}", "failed", reason: "boom")).ToArray()),
                link: "</api/v1/sessions?user=alice&state=failed&limit=20&after=CURSOR2>; rel=\"next\"");

        var cut = Render<MySessions>();

        var shown = cut.FindAll("tr[data-session]").Select(r => r.GetAttribute("data-session")).ToList();
        shown.Count.ShouldBe(22);
        shown.ShouldContain("alice-xterm-aaaaaa");
        shown.ShouldContain("alice-xterm-bbbbbb");
        cut.Markup.ShouldContain("Only your 20 most recent failed sessions are listed.");
        Api.RequestsTo("GET /api/v1/sessions?user=alice&live=true&limit=500&after=CURSOR1").Count.ShouldBe(1);
        // The failures' next page is not read.
        Api.RequestsTo("GET /api/v1/sessions?user=alice&state=failed&limit=20&after=CURSOR2").ShouldBeEmpty();
    }

    [Fact]
    public void A_session_in_both_lists_is_shown_once()
    {
        // It failed between the two calls.
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "starting") }))
           .Answer(Failed, Json(new[] { Session("alice-xterm-aaaaaa", "failed", reason: "boom") }));
        var cut = Render<MySessions>();
        cut.FindAll("tr[data-session]").Count.ShouldBe(1);
        cut.Markup.ShouldNotContain("most recent failed sessions");
    }

    [Fact]
    public void State_changes_appear_on_the_next_refresh_without_reloading()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "starting") }))
           .Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }));
        var cut = Render<MySessions>();
        cut.Find(".badge").TextContent.ShouldBe("starting");
        cut.FindAll("a.button").ShouldBeEmpty();

        NextRefresh();

        cut.WaitForAssertion(() => cut.Find(".badge").TextContent.ShouldBe("running"));
        cut.Find("a.button").TextContent.ShouldBe("Connect");
        Api.RequestsTo(List).Count.ShouldBe(2);
    }

    [Fact]
    public void Terminate_asks_first_then_deletes_and_the_terminated_session_disappears()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }))
           .Answer(List, "[]")
           .Answer("DELETE /api/v1/sessions/alice-xterm-aaaaaa", HttpStatusCode.Accepted, "");
        var cut = Render<MySessions>();

        cut.Find("button[aria-label='Terminate alice-xterm-aaaaaa']").Click();
        Api.RequestsTo("DELETE /api/v1/sessions/alice-xterm-aaaaaa").ShouldBeEmpty();
        cut.Find(".confirm").TextContent.ShouldContain("End this session?");

        cut.Find(".confirm button.danger").Click();

        cut.WaitForAssertion(() => cut.FindAll("tr[data-session]").ShouldBeEmpty());
        Api.RequestsTo("DELETE /api/v1/sessions/alice-xterm-aaaaaa").Count.ShouldBe(1);
        cut.Markup.ShouldContain("You have no sessions");
    }

    [Fact]
    public void The_confirmation_takes_the_keyboard_focus_and_cancel_gives_it_back()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }));
        var cut = Render<MySessions>();

        cut.Find("button[aria-label='Terminate alice-xterm-aaaaaa']").Click();
        var onConfirm = JSInterop.VerifyFocusAsyncInvoke().Arguments[0].ShouldBeOfType<ElementReference>();
        cut.Find(".confirm button.danger").GetAttribute("blazor:elementReference").ShouldBe(onConfirm.Id);

        cut.FindAll(".confirm button").Single(b => b.TextContent == "Cancel").Click();
        var back = JSInterop.VerifyFocusAsyncInvoke(calledTimes: 2)[1].Arguments[0].ShouldBeOfType<ElementReference>();
        cut.Find("button[aria-label='Terminate alice-xterm-aaaaaa']").GetAttribute("blazor:elementReference").ShouldBe(back.Id);
    }

    [Fact]
    public void Every_state_has_the_same_three_action_slots_and_a_reason_line_so_rows_keep_their_shape()
    {
        var states = new[] { "pending", "starting", "running", "hibernating", "hibernated", "waking", "terminating", "failed" };
        var sessions = states.Select((state, i) => Session($"alice-xterm-{(char)('a' + i)}aaaaa", state, reason: state == "failed" ? "boom" : null)).ToArray();
        Api.Answer(List, Json(sessions[..^1])).Answer(Failed, Json(sessions[^1..]));
        var cut = Render<MySessions>();

        var rows = cut.FindAll("tr[data-session]");
        rows.Count.ShouldBe(states.Length);
        foreach (var row in rows)
        {
            row.QuerySelectorAll("td.actions .action-slots > .slot").Length.ShouldBe(3, row.GetAttribute("data-state"));
            row.QuerySelectorAll(".reason").Length.ShouldBe(1, row.GetAttribute("data-state"));
        }
    }

    [Fact]
    public void A_session_that_already_ended_offers_no_terminate_or_remove()
    {
        // Deleting a failed session changes nothing (it is final; the API answers 202 and keeps it), so the row would stay.
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running"), Session("alice-xterm-bbbbbb", "terminating") }))
           .Answer(Failed, Json(new[] { Session("alice-xterm-cccccc", "failed", reason: "Xvnc exited with code 1") }));
        var cut = Render<MySessions>();

        cut.FindAll("button[aria-label='Terminate alice-xterm-aaaaaa']").Count.ShouldBe(1);
        foreach (var ended in new[] { "alice-xterm-bbbbbb", "alice-xterm-cccccc" })
        {
            var row = cut.Find($"tr[data-session='{ended}']");
            row.QuerySelectorAll("button").ShouldBeEmpty(ended);
            row.TextContent.ShouldNotContain("Remove");
        }
    }

    [Fact]
    public void Cancel_on_the_confirmation_sends_nothing()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }));
        var cut = Render<MySessions>();
        cut.Find("button[aria-label='Terminate alice-xterm-aaaaaa']").Click();
        cut.FindAll(".confirm button").Single(b => b.TextContent == "Cancel").Click();
        cut.FindAll(".confirm").ShouldBeEmpty();
        Api.Requests.ShouldNotContain(r => r.Route.StartsWith("DELETE", StringComparison.Ordinal));
    }

    [Fact]
    public void Wake_and_hibernate_call_the_api_and_a_refused_action_shows_the_message_on_its_row()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "hibernated"), Session("alice-xterm-bbbbbb", "running") }))
           .Answer("POST /api/v1/sessions/alice-xterm-aaaaaa/wake", HttpStatusCode.Accepted, "")
           .Answer("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate", HttpStatusCode.Conflict,
               """{"error":"Conflict","message":"The session is already hibernating."}""");
        var cut = Render<MySessions>();

        cut.Find("button[aria-label='Wake alice-xterm-aaaaaa']").Click();
        cut.Find("button[aria-label='Hibernate alice-xterm-bbbbbb']").Click();

        cut.WaitForAssertion(() => cut.Find("tr.row-error").TextContent.ShouldContain("The session is already hibernating."));
        Api.RequestsTo("POST /api/v1/sessions/alice-xterm-aaaaaa/wake").Count.ShouldBe(1);
    }

    [Fact]
    public void A_second_click_on_a_row_action_before_the_first_is_answered_sends_nothing_more()
    {
        // As the API answers a repeated hibernate: the first is accepted, the second finds it hibernating.
        Api.Answer(List, Json(new[] { Session("alice-xterm-bbbbbb", "running") }))
           .Answer("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate", HttpStatusCode.Accepted, "")
           .Answer("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate", HttpStatusCode.Conflict,
               """{"error":"Conflict","message":"The session is already hibernating."}""");
        var answer = Api.Hold("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate");
        var cut = Render<MySessions>();
        var hibernate = cut.Find("button[aria-label='Hibernate alice-xterm-bbbbbb']");

        hibernate.Click();
        cut.WaitForAssertion(() => Api.RequestsTo("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate").Count.ShouldBe(1));
        hibernate.Click();
        answer();

        // The accepted action reloads the list at once.
        cut.WaitForAssertion(() => Api.RequestsTo(List).Count.ShouldBe(2));
        Api.RequestsTo("POST /api/v1/sessions/alice-xterm-bbbbbb/hibernate").Count.ShouldBe(1);
        cut.FindAll("tr.row-error").ShouldBeEmpty();
    }

    [Fact]
    public void A_failed_refresh_keeps_the_last_list_and_says_why()
    {
        Api.Answer(List, Json(new[] { Session("alice-xterm-aaaaaa", "running") }))
           .Answer(List, HttpStatusCode.ServiceUnavailable, """{"error":"Database unavailable","message":"The database cannot be reached right now; try again shortly."}""");
        var cut = Render<MySessions>();
        NextRefresh();
        cut.WaitForAssertion(() => cut.Find(".error").TextContent.ShouldContain("The database cannot be reached right now"));
        cut.FindAll("tr[data-session]").Count.ShouldBe(1);
    }

    [Fact]
    public void An_expired_sign_in_goes_to_the_sign_in_page_and_back()
    {
        Navigation.NavigateTo("/sessions");
        Api.Answer(List, HttpStatusCode.Unauthorized, """{"error":"Unauthorized","message":"The token is invalid or expired; sign in again."}""");

        Render<MySessions>();

        var target = new Uri(Navigation.Uri);
        target.AbsolutePath.ShouldBe("/signin");
        System.Web.HttpUtility.ParseQueryString(target.Query)["returnUrl"].ShouldBe("/sessions");
        Navigation.History.First().Options.ForceLoad.ShouldBeTrue();
    }
}

/// <summary>My sessions of an admin: their own sessions, not everybody's (the API lists all sessions to an admin who names no user).</summary>
public sealed class MySessionsTests_Admin() : ComponentTest("root", admin: true)
{
    private const string List = "GET /api/v1/sessions?user=root&live=true&limit=500";
    private const string Failed = "GET /api/v1/sessions?user=root&state=failed&limit=20";

    [Fact]
    public void Asks_only_for_the_admins_own_sessions_on_every_refresh()
    {
        Api.Fallback(List, Json(new[] { Session("root-xterm-aaaaaa", "running", user: "root") }))
           .Fallback(Failed, "[]");

        var cut = Render<MySessions>();
        NextRefresh();

        cut.WaitForAssertion(() => Api.RequestsTo(List).Count.ShouldBe(2));
        Api.RequestsTo(Failed).Count.ShouldBe(2);
        Api.Requests.ShouldAllBe(r => r.Route + r.Query == List || r.Route + r.Query == Failed);
        cut.FindAll("tr[data-session]").Select(r => r.GetAttribute("data-session")).ShouldBe(["root-xterm-aaaaaa"]);
    }
}
