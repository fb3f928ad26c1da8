using StreamSpace.ControlPlane.Web.Api;

namespace StreamSpace.Web.Tests;

/// <summary>
/// What the template editor shows (the API's JSON written as YAML) reads back, through the API's own YAML reader, as the
/// same template: text YAML would otherwise take for null, a boolean or a number stays text.
/// </summary>
public sealed class TemplateYamlRoundTripTests
{
    [Fact]
    public void Text_that_looks_like_null_a_boolean_or_a_number_comes_back_as_the_same_text()
    {
        const string json = """
            {"name":"odd","displayName":"null","description":"~","category":"true","icon":"12",
             "defaultResources":{"cpu":"1","memory":"1Gi"},"stream":{"protocol":"vnc","port":5900},
             "env":{"EMPTY":"","TILDE":"~","NULLISH":"null","YES":"yes","OCTAL":"0755"},"process":{"command":"xterm"}}
            """;

        var yaml = TemplateYaml.FromJson(json);

        StreamSpace.ControlPlane.Templates.TemplateYaml.TryParse(yaml, out var template, out var error).ShouldBeTrue(error);
        template!.Validate().IsValid.ShouldBeTrue(yaml);
        (template.DisplayName, template.Description, template.Category, template.Icon).ShouldBe(("null", "~", "true", "12"), yaml);
        template.Env.ShouldBe(new Dictionary<string, string> { ["EMPTY"] = "", ["TILDE"] = "~", ["NULLISH"] = "null", ["YES"] = "yes", ["OCTAL"] = "0755" }, yaml);
        template.DefaultResources!.Cpu.ShouldBe("1");
    }
}
