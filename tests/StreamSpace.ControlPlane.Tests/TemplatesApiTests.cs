using StreamSpace.ControlPlane.Templates;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using StreamSpace.ControlPlane.Tests.Infrastructure;

namespace StreamSpace.ControlPlane.Tests;

public abstract class TemplatesApiTests(ControlPlaneFixture cp)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static object ValidBody(string displayName = "My App") => new
    {
        displayName,
        description = "test",
        category = "Tests",
        defaultResources = new { cpu = "500m", memory = "512Mi" },
        stream = new { protocol = "vnc", port = 5901 },
        env = new Dictionary<string, string> { ["FOO"] = "bar" },
        process = new { command = "xterm -e top" },
    };

    [Fact]
    public async Task Users_list_and_read_the_seeded_catalog()
    {
        var (user, _, _) = await cp.QuickUserAsync("reader");
        var list = await (await user.GetAsync("/api/v1/templates", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        var names = list.EnumerateArray().Select(t => t.GetProperty("name").GetString()).ToList();
        names.ShouldContain("xterm");
        names.ShouldContain("firefox-browser");
        names.ShouldContain("chromium-browser");

        var firefox = await (await user.GetAsync("/api/v1/templates/firefox-browser", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        firefox.GetProperty("displayName").GetString().ShouldBe("Firefox");
        firefox.GetProperty("defaultResources").GetProperty("memory").GetString().ShouldBe("2Gi");
        firefox.GetProperty("stream").GetProperty("port").GetInt32().ShouldBe(5900);
        firefox.GetProperty("process").GetProperty("command").GetString().ShouldBe("firefox-esr --no-remote --new-instance");
        firefox.GetProperty("builtin").GetBoolean().ShouldBeTrue();

        await (await user.GetAsync("/api/v1/templates/no-such-template", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Users_cannot_change_the_catalog()
    {
        var (user, _, _) = await cp.QuickUserAsync("nosy");
        await (await user.PostAsJsonAsync("/api/v1/templates/mine", ValidBody(), Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.PutAsJsonAsync("/api/v1/templates/xterm", ValidBody(), Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await user.DeleteAsync("/api/v1/templates/xterm", Ct)).ShouldBeErrorAsync(HttpStatusCode.Forbidden);
        await (await cp.Client().GetAsync("/api/v1/templates", Ct)).ShouldBeErrorAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task Admin_creates_replaces_and_deletes_a_template()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("app-");

        var created = await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", ValidBody(), Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        created.GetProperty("name").GetString().ShouldBe(name);
        created.GetProperty("builtin").GetBoolean().ShouldBeFalse();
        created.GetProperty("home").GetProperty("mountPath").GetString().ShouldBe("/home/user");
        created.GetProperty("env").GetProperty("FOO").GetString().ShouldBe("bar");

        await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", ValidBody(), Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);

        var replaced = await (await admin.PutAsJsonAsync($"/api/v1/templates/{name}", ValidBody("Renamed"), Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        replaced.GetProperty("displayName").GetString().ShouldBe("Renamed");
        (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .GetProperty("displayName").GetString().ShouldBe("Renamed");

        (await admin.DeleteAsync($"/api/v1/templates/{name}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent);
        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await admin.DeleteAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        await (await admin.PutAsJsonAsync($"/api/v1/templates/{name}", ValidBody(), Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);

        var audit = await cp.ScalarAsync<long>("SELECT COUNT(*) FROM audit_log WHERE action = 'template.changed' AND target = @name", new { name });
        audit.ShouldBe(3);
    }

    [Fact]
    public async Task Admin_creates_a_template_from_yaml()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("yaml-");
        var yaml = TemplateYaml(name, "From YAML", "docker:\n  image: example/app:1");
        var response = await admin.PostAsync($"/api/v1/templates/{name}", new StringContent(yaml, Encoding.UTF8, "application/yaml"), Ct);
        var json = await response.ShouldBeJsonAsync(HttpStatusCode.Created);
        json.GetProperty("docker").GetProperty("image").GetString().ShouldBe("example/app:1");
        json.GetProperty("category").GetString().ShouldBe("Other");

        var bad = await admin.PutAsync($"/api/v1/templates/{name}", new StringContent("displayName: [unclosed", Encoding.UTF8, "text/yaml"), Ct);
        var error = await bad.ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        error.GetProperty("message").GetString()!.ShouldContain("YAML");

        var unknownKey = await admin.PutAsync($"/api/v1/templates/{name}", new StringContent("displayName: X\nproccess:\n  command: xterm\n", Encoding.UTF8, "text/yaml"), Ct);
        await unknownKey.ShouldBeErrorAsync(HttpStatusCode.BadRequest);

        // A key given twice is refused, not "the last one wins", and the template stays as it was.
        var twice = await admin.PutAsync($"/api/v1/templates/{name}",
            new StringContent(TemplateYaml(name, "Once", "docker:\n  image: example/app:1\ndisplayName: Twice"), Encoding.UTF8, "application/yaml"), Ct);
        (await twice.ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("message").GetString()!.ShouldContain("'displayName' appears more than once");
        (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .GetProperty("displayName").GetString().ShouldBe("From YAML");
    }

    /// <summary>A template in YAML with the required fields, then <paramref name="rest"/> (runtime sections and the like).</summary>
    /// <summary>
    /// A template body is decoded in the charset its Content-Type names (UTF-8 without one), strictly: bytes that are not
    /// valid there were replaced by U+FFFD and stored (a Latin-1 "Café" sent without its charset came back "Caf\uFFFD").
    /// </summary>
    [Fact]
    public async Task A_template_body_is_read_in_its_charset_and_bytes_invalid_there_are_refused_not_replaced()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("charset-");
        var yaml = TemplateYaml(name, "Café", "process:\n  command: xterm");
        HttpContent Body(byte[] bytes, string contentType)
        {
            var content = new ByteArrayContent(bytes);
            content.Headers.TryAddWithoutValidation("Content-Type", contentType); // "charset=" with nothing after it too
            return content;
        }

        // Latin-1 bytes without a charset: not UTF-8, refused saying where; nothing stored.
        var refused = await (await admin.PostAsync($"/api/v1/templates/{name}", Body(Encoding.Latin1.GetBytes(yaml), "application/yaml"), Ct))
            .ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        refused.GetProperty("message").GetString()!.ShouldStartWith($"The request body is not valid utf-8 at byte {Encoding.UTF8.GetByteCount(yaml[..yaml.IndexOf('é')])}: send the template as UTF-8");
        refused.GetProperty("fields").GetProperty("body").GetString()!.ShouldStartWith("is not valid utf-8 at byte ");
        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
        var json = System.Text.Json.JsonSerializer.Serialize(ValidBody("(name)")).Replace("(name)", "Café"); // not escaped as \u00E9
        (await (await admin.PostAsync($"/api/v1/templates/{name}", Body(Encoding.Latin1.GetBytes(json), "application/json"), Ct))
            .ShouldBeErrorAsync(HttpStatusCode.BadRequest)).GetProperty("message").GetString()!.ShouldStartWith("The request body is not valid utf-8 at byte ");

        // The same bytes with their charset named, and UTF-16 JSON: stored as written.
        (await (await admin.PostAsync($"/api/v1/templates/{name}", Body(Encoding.Latin1.GetBytes(yaml), "application/yaml; charset=ISO-8859-1"), Ct))
            .ShouldBeJsonAsync(HttpStatusCode.Created)).GetProperty("displayName").GetString().ShouldBe("Café");
        (await (await admin.PutAsync($"/api/v1/templates/{name}", Body(Encoding.Unicode.GetBytes(json.Replace("Café", "Café ✓")), "application/json; charset=\"utf-16\""), Ct))
            .ShouldBeJsonAsync(HttpStatusCode.OK)).GetProperty("displayName").GetString().ShouldBe("Café ✓");
        // UTF-8 with a byte order mark, as some editors save it.
        (await (await admin.PutAsync($"/api/v1/templates/{name}", Body([.. Encoding.UTF8.Preamble, .. Encoding.UTF8.GetBytes(yaml)], "text/yaml"), Ct))
            .ShouldBeJsonAsync(HttpStatusCode.OK)).GetProperty("displayName").GetString().ShouldBe("Café");
        (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK)).GetProperty("displayName").GetString().ShouldBe("Café");

        // A charset the server does not know, or none at all after "charset=": 415 naming it, nothing changed.
        foreach (var (contentType, named) in new[] { ("application/yaml; charset=bogus", "the charset 'bogus', which the server does not know"), ("application/json; charset=", "an empty charset") })
        {
            var unknown = await (await admin.PutAsync($"/api/v1/templates/{name}", Body(Encoding.UTF8.GetBytes(yaml), contentType), Ct))
                .ShouldBeErrorAsync(HttpStatusCode.UnsupportedMediaType);
            unknown.GetProperty("message").GetString().ShouldBe($"The request's Content-Type names {named}; send the template as UTF-8 (or name the charset it is in).");
        }
    }

    [Fact]
    public async Task An_env_variable_without_a_value_is_set_empty_and_a_tagged_env_mapping_is_refused_in_words()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("envnull-");
        var created = await (await admin.PostAsync($"/api/v1/templates/{name}",
            new StringContent(TemplateYaml(name, "Env", "process:\n  command: xterm\nenv:\n  EMPTY:\n  SET: x"), Encoding.UTF8, "application/yaml"), Ct))
            .ShouldBeJsonAsync(HttpStatusCode.Created);
        created.GetProperty("env").GetProperty("EMPTY").GetString().ShouldBe("");
        created.GetProperty("env").GetProperty("SET").GetString().ShouldBe("x");
        var body = JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(ValidBody()))!;
        body["env"]!["NOTHING"] = null;
        (await (await admin.PutAsync($"/api/v1/templates/{name}", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct))
            .ShouldBeJsonAsync(HttpStatusCode.OK)).GetProperty("env").GetProperty("NOTHING").GetString().ShouldBe("");

        var mapping = await (await admin.PutAsync($"/api/v1/templates/{name}",
            new StringContent(TemplateYaml(name, "Env", "process:\n  command: xterm\nenv: !!map {}"), Encoding.UTF8, "application/yaml"), Ct))
            .ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        var message = mapping.GetProperty("message").GetString()!;
        message.ShouldContain("expected a plain value here, not a mapping or list");
        message.ShouldNotContain("IConvertible");
    }

    private static string TemplateYaml(string name, string displayName, string rest) => $"""
        name: {name}
        displayName: {displayName}
        defaultResources:
          cpu: 250m
          memory: 256Mi
        stream:
          protocol: vnc
          port: 5900
        {rest}
        """;

    [Fact]
    public async Task A_template_too_large_for_one_start_message_is_400_also_when_yaml_aliases_repeat_a_string()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("big-");
        string Yaml(string extra) => TemplateYaml(name, "Big", extra);
        // A command of shell redirections: each '<' or '>' is six bytes in the JSON of a start command.
        var command = "xterm " + string.Concat(Enumerable.Repeat("<>", 40_000));
        var json = await (await admin.PostAsync($"/api/v1/templates/{name}",
            new StringContent(Yaml($"process:\n  command: \"{command}\""), Encoding.UTF8, "application/yaml"), Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        json.GetProperty("fields").GetProperty("template").GetString()!.ShouldContain($"at most {TemplateDefinition.MaxTextLength}");

        // One 100 000-character string named once and repeated by 5 000 aliases: 500 million characters once resolved.
        var env = string.Concat(Enumerable.Range(0, 5_000).Select(i => $"  V{i}: *big\n"));
        var bomb = Yaml($"description: &big \"{new string('x', 100_000)}\"\nprocess:\n  command: xterm\nenv:\n{env}");
        json = await (await admin.PostAsync($"/api/v1/templates/{name}", new StringContent(bomb, Encoding.UTF8, "application/yaml"), Ct))
            .ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        json.GetProperty("fields").GetProperty("template").GetString()!.ShouldContain("characters of text");
        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task An_env_entry_or_command_longer_than_exec_takes_in_one_string_is_400_naming_it()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("argmax-");
        object Body(string value, string command = "xterm") => new
        {
            displayName = "Arg max",
            defaultResources = new { cpu = "500m", memory = "512Mi" },
            stream = new { protocol = "vnc", port = 5901 },
            env = new Dictionary<string, string> { ["FOO"] = value },
            process = new { command },
        };
        // 44 000 characters fit the template's 64 Ki, but as UTF-8 "FOO=" + 132 000 bytes is more than Linux's
        // MAX_ARG_STRLEN (131 072 bytes with the NUL): every session start failed "Argument list too long".
        var wide = new string('中', 44_000);
        var json = await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", Body(wide), Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        var field = json.GetProperty("fields").GetProperty("env.FOO").GetString()!;
        field.ShouldContain("132004 bytes");
        field.ShouldContain("MAX_ARG_STRLEN");
        json = await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", Body("bar", "xterm -title " + wide), Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        json.GetProperty("fields").GetProperty("process.command").GetString()!.ShouldContain("MAX_ARG_STRLEN");
        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);

        // As many characters of ASCII are 44 004 bytes: accepted, and stored whole.
        var ascii = new string('x', 44_000);
        await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", Body(ascii, "xterm -title " + ascii[..20_000]), Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .GetProperty("env").GetProperty("FOO").GetString().ShouldBe(ascii);
    }

    [Fact]
    public async Task Invalid_templates_are_400_naming_the_fields()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("bad-");

        async Task ExpectFieldAsync(object body, params string[] fields)
        {
            var json = await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", body, Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
            var named = json.GetProperty("fields").EnumerateObject().Select(p => p.Name).ToList();
            foreach (var field in fields) named.ShouldContain(field);
        }

        await ExpectFieldAsync(new { }, "displayName", "defaultResources", "stream", "process");
        await ExpectFieldAsync(new
        {
            displayName = "X",
            defaultResources = new { cpu = "lots", memory = "-1Gi" },
            stream = new { protocol = "rdp", port = 70000 },
            process = new { command = "" },
            idleTimeoutMinutes = -5,
        }, "defaultResources.cpu", "defaultResources.memory", "stream.protocol", "stream.port", "process.command", "idleTimeoutMinutes");
        await ExpectFieldAsync(new
        {
            name = "other-name",
            displayName = "X",
            defaultResources = new { cpu = "1", memory = "1Gi" },
            stream = new { protocol = "vnc", port = 5900 },
            process = new { command = "xterm" },
        }, "name");
        await ExpectFieldAsync(new
        {
            displayName = "X",
            defaultResources = new { cpu = "1", memory = "1Gi" },
            stream = new { protocol = "vnc", port = 5900 },
            kubernetes = new { image = "" },
        }, "kubernetes.image");

        // An invalid name in the path.
        var badName = await (await admin.PostAsJsonAsync("/api/v1/templates/Bad_Name", ValidBody(), Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        badName.GetProperty("fields").TryGetProperty("name", out _).ShouldBeTrue();

        // Malformed JSON, wrong types, unknown fields, null body, unsupported media type.
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", "{not json")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", """{"displayName": 5}""")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", """{"stream": {"port": "x"}}""")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", """{"displayName": "X", "surprise": true}""")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", "null")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", "")).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        await (await admin.PostRawAsync($"/api/v1/templates/{name}", "<xml/>", "application/xml")).ShouldBeErrorAsync(HttpStatusCode.UnsupportedMediaType);

        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_template_read_with_GET_can_be_edited_and_PUT_back_as_it_is()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("roundtrip-");
        await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", ValidBody(), Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        var read = await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);

        // curl | jq | curl: the whole answer, bookkeeping included, with one field changed. The bookkeeping is the
        // catalog's and is ignored, even when it says something else.
        var body = JsonNode.Parse(read.GetRawText())!.AsObject();
        body["builtin"].ShouldNotBeNull();
        body["createdAt"].ShouldNotBeNull();
        body["updatedAt"].ShouldNotBeNull();
        body["displayName"] = "Edited";
        body["builtin"] = true;
        body["createdAt"] = "2000-01-01T00:00:00Z";
        var replaced = await (await admin.PutAsync($"/api/v1/templates/{name}",
            new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        replaced.GetProperty("displayName").GetString().ShouldBe("Edited");

        var stored = await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
        stored.GetProperty("displayName").GetString().ShouldBe("Edited");
        stored.GetProperty("builtin").GetBoolean().ShouldBeFalse();
        stored.GetProperty("createdAt").GetDateTimeOffset().ShouldBe(read.GetProperty("createdAt").GetDateTimeOffset());
        stored.GetProperty("defaultResources").GetProperty("cpu").GetString().ShouldBe("500m");
        stored.GetProperty("process").GetProperty("command").GetString().ShouldBe("xterm -e top");

        // Any other unknown field is still refused, by name; the answer lists only the fields a body sets.
        body["surprise"] = 1;
        var refused = await (await admin.PutAsync($"/api/v1/templates/{name}",
            new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct)).ShouldBeErrorAsync(HttpStatusCode.BadRequest);
        refused.GetProperty("fields").TryGetProperty("surprise", out _).ShouldBeTrue(refused.ToString());
        refused.GetProperty("message").GetString()!.ShouldNotContain("builtin");
        (await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK))
            .GetProperty("updatedAt").GetDateTimeOffset().ShouldBe(stored.GetProperty("updatedAt").GetDateTimeOffset());

        // The same for a new template made from another's answer.
        var copy = ControlPlaneFixture.Unique("copy-");
        body.Remove("surprise");
        body["name"] = copy;
        var made = await (await admin.PostRawAsync($"/api/v1/templates/{copy}", body.ToJsonString())).ShouldBeJsonAsync(HttpStatusCode.Created);
        made.GetProperty("displayName").GetString().ShouldBe("Edited");
        made.GetProperty("builtin").GetBoolean().ShouldBeFalse();
    }

    [Fact]
    public async Task Deleting_a_template_in_use_is_409_naming_how_many_sessions()
    {
        var admin = await cp.AdminClientAsync();
        var name = ControlPlaneFixture.Unique("busy-");
        await (await admin.PostAsJsonAsync($"/api/v1/templates/{name}", ValidBody(), Ct)).ShouldBeJsonAsync(HttpStatusCode.Created);
        var (_, userId, username) = await cp.QuickUserAsync("busy");
        await cp.InsertSessionAsync($"{username}-{name}-aaaaaa", userId, username, "running", template: name);
        await cp.InsertSessionAsync($"{username}-{name}-bbbbbb", userId, username, "hibernated", template: name);
        await cp.InsertSessionAsync($"{username}-{name}-cccccc", userId, username, "terminated", template: name);

        var conflict = await (await admin.DeleteAsync($"/api/v1/templates/{name}", Ct)).ShouldBeErrorAsync(HttpStatusCode.Conflict);
        conflict.GetProperty("message").GetString()!.ShouldContain("2 live sessions");
        await (await admin.GetAsync($"/api/v1/templates/{name}", Ct)).ShouldBeJsonAsync(HttpStatusCode.OK);
    }
}

public sealed class TemplatesApiTests_Sqlite(SqliteControlPlane cp) : TemplatesApiTests(cp), IClassFixture<SqliteControlPlane>;
public sealed class TemplatesApiTests_Postgres(PostgresControlPlane cp) : TemplatesApiTests(cp), IClassFixture<PostgresControlPlane>;
