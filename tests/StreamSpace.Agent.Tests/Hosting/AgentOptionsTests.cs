using Microsoft.Extensions.Configuration;
using StreamSpace.Agent.Hosting;

namespace StreamSpace.Agent.Tests.Hosting;

public class AgentOptionsTests
{
    private static AgentOptions From(Dictionary<string, string?> values) =>
        AgentOptions.FromConfiguration(new ConfigurationBuilder().AddInMemoryCollection(values).Build());

    [Fact]
    public void Reads_the_contract_variables_with_defaults()
    {
        var options = From(new()
        {
            ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:8000",
            ["STREAMSPACE_AGENT_ID"] = "edge-1",
            ["STREAMSPACE_AGENT_TOKEN"] = "secret",
        });
        options.Validate();
        options.StateFolder.ShouldBe(Path.Combine("data", "agent-edge-1"));
        options.Runtime.ShouldBe("process");
        options.HeartbeatSeconds.ShouldBe(10);
        options.MaxSessions.ShouldBe(10);
        options.Region.ShouldBe("default");
        options.ConnectUri().ShouldBe(new Uri("ws://127.0.0.1:8000/api/v1/agents/connect"));
    }

    [Fact]
    public void Section_form_works_and_flat_variables_win()
    {
        var options = From(new()
        {
            ["StreamSpace:Agent:ControlPlaneUrl"] = "https://cp.example:8443/base/",
            ["StreamSpace:Agent:AgentId"] = "a",
            ["StreamSpace:Agent:Token"] = "t",
            ["StreamSpace:Agent:MaxSessions"] = "3",
            ["STREAMSPACE_MAX_SESSIONS"] = "4",
            ["STREAMSPACE_RUNTIME"] = "simulated",
            ["STREAMSPACE_AGENT_STATE"] = "/var/lib/agent",
        });
        options.Validate();
        options.MaxSessions.ShouldBe(4);
        options.Runtime.ShouldBe("simulated");
        options.StateFolder.ShouldBe("/var/lib/agent");
        options.ConnectUri().ShouldBe(new Uri("wss://cp.example:8443/base/api/v1/agents/connect"));
    }

    [Theory]
    [InlineData("docker", "not built yet")]
    [InlineData("kubernetes", "not built yet")]
    [InlineData("podman", "must be one of")]
    public void Unbuilt_or_unknown_runtime_is_refused_clearly(string runtime, string expected)
    {
        var options = From(new()
        {
            ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:8000",
            ["STREAMSPACE_AGENT_ID"] = "a",
            ["STREAMSPACE_AGENT_TOKEN"] = "t",
            ["STREAMSPACE_RUNTIME"] = runtime,
        });
        Should.Throw<AgentOptionsException>(options.Validate).Message.ShouldContain(expected);
    }

    [Fact]
    public void Every_problem_is_named_at_once()
    {
        var options = From(new() { ["STREAMSPACE_CONTROL_PLANE"] = "ftp://x", ["STREAMSPACE_HEARTBEAT_SECONDS"] = "0" });
        var message = Should.Throw<AgentOptionsException>(options.Validate).Message;
        message.ShouldContain("STREAMSPACE_CONTROL_PLANE");
        message.ShouldContain("STREAMSPACE_AGENT_ID");
        message.ShouldContain("STREAMSPACE_AGENT_TOKEN");
        message.ShouldContain("STREAMSPACE_HEARTBEAT_SECONDS");
    }

    /// <summary>The three settings an agent cannot start without.</summary>
    private static Dictionary<string, string?> Base() => new()
    {
        ["STREAMSPACE_CONTROL_PLANE"] = "http://127.0.0.1:8000", ["STREAMSPACE_AGENT_ID"] = "edge-1", ["STREAMSPACE_AGENT_TOKEN"] = "secret",
    };

    [Fact]
    public void Session_accounts_are_per_owner_by_default_and_their_prefix_fits_a_linux_account_name()
    {
        var defaults = From(Base());
        defaults.SessionUserPerOwner.ShouldBeTrue();
        defaults.SessionUser.ShouldBe("streamspace");
        StreamSpace.Agent.Runtimes.Process.SessionUser.AccountName("streamspace", "alice").Length.ShouldBeLessThanOrEqualTo(32);

        var shared = Base();
        shared["STREAMSPACE_SESSION_USER_PER_OWNER"] = "false";
        shared["STREAMSPACE_SESSION_USER"] = "a-long-shared-account";
        var options = From(shared);
        options.SessionUserPerOwner.ShouldBeFalse();
        options.Validate(); // one shared account may have any valid name

        var tooLong = Base();
        tooLong["STREAMSPACE_SESSION_USER"] = "a-long-shared-account";
        Should.Throw<AgentOptionsException>(() => From(tooLong).Validate()).Message.ShouldContain("at most 15 characters");
        var notABool = Base();
        notABool["STREAMSPACE_SESSION_USER_PER_OWNER"] = "yes";
        Should.Throw<AgentOptionsException>(() => From(notABool)).Message.ShouldContain("true or false");
    }

    [Theory]
    [InlineData("bad:user", "true", "STREAMSPACE_SESSION_USER 'bad:user' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("-streams", "false", "STREAMSPACE_SESSION_USER '-streams' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("12345", "false", "STREAMSPACE_SESSION_USER '12345' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("a b", "false", "STREAMSPACE_SESSION_USER 'a b' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("ss/x", "false", "STREAMSPACE_SESSION_USER 'ss/x' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("two\nlines", "false", "STREAMSPACE_SESSION_USER 'two?lines' is not a valid account name: letters, digits, '.', '_' and '-' (a '$' at the end), not beginning with '-' and not only digits")]
    [InlineData("host$", "true", "STREAMSPACE_SESSION_USER 'host$' is the prefix of per-owner accounts and cannot end in '$' (only an account name's last character may be one)")]
    [InlineData("root", "false", "STREAMSPACE_SESSION_USER must name an unprivileged user")]
    [InlineData("a-shared-session-account-33-chars", "false", "STREAMSPACE_SESSION_USER 'a-shared-session-account-33-chars' may have at most 32 characters")]
    public void A_session_user_that_is_no_valid_account_name_is_refused_before_anything_starts(string name, string perOwner, string problem)
    {
        var settings = Base();
        settings["STREAMSPACE_SESSION_USER"] = name;
        settings["STREAMSPACE_SESSION_USER_PER_OWNER"] = perOwner;
        var options = From(settings);
        options.SessionUserProblem().ShouldBe(problem);
        Should.Throw<AgentOptionsException>(options.Validate).Message.ShouldBe($"invalid agent configuration: {problem}");
        Should.Throw<AgentOptionsException>(options.ValidateSessionUser).Message.ShouldBe($"invalid agent configuration: {problem}");
    }

    [Theory]
    [InlineData("streamspace", "true")]
    [InlineData("_ss-2", "true")]
    // Names useradd takes that the rule of 2026-12-01 refused for a while: an agent that ran with one must keep running.
    [InlineData("john.doe", "false")]
    [InlineData("Stream.User", "true")]
    [InlineData("1stream", "false")]
    [InlineData("machine$", "false")]
    [InlineData("a-shared-session-account-32chars", "false")]
    public void A_session_user_that_is_a_valid_account_name_is_accepted(string name, string perOwner)
    {
        var settings = Base();
        settings["STREAMSPACE_SESSION_USER"] = name;
        settings["STREAMSPACE_SESSION_USER_PER_OWNER"] = perOwner;
        var options = From(settings);
        options.Validate();
        options.ValidateSessionUser();
    }

    [Fact]
    public void A_sessions_log_is_capped_at_8_MiB_by_default_and_never_below_64_KiB()
    {
        From(Base()).SessionLogMaxBytes.ShouldBe(8L * 1024 * 1024);
        var smaller = Base();
        smaller["StreamSpace:Agent:SessionLogMaxBytes"] = "1048576";
        From(smaller).SessionLogMaxBytes.ShouldBe(1024 * 1024);
        smaller["StreamSpace:Agent:SessionLogMaxBytes"] = "1000";
        Should.Throw<AgentOptionsException>(() => From(smaller).Validate()).Message
            .ShouldContain("SessionLogMaxBytes (StreamSpace__Agent__SessionLogMaxBytes) must be at least 65536");
    }

    [Fact]
    public void Session_limits_are_on_by_default_and_turned_off_by_environment()
    {
        From(Base()).SessionLimits.ShouldBeTrue();
        From(Base()).SessionMaxProcesses.ShouldBe(4096);
        var fewer = Base();
        fewer["STREAMSPACE_SESSION_MAX_PROCESSES"] = "512";
        From(fewer).SessionMaxProcesses.ShouldBe(512);
        fewer["STREAMSPACE_SESSION_MAX_PROCESSES"] = "8";
        Should.Throw<AgentOptionsException>(() => From(fewer).Validate()).Message.ShouldContain("STREAMSPACE_SESSION_MAX_PROCESSES) must be between 16 and 4194304");
        var off = Base();
        off["STREAMSPACE_SESSION_LIMITS"] = "false";
        From(off).SessionLimits.ShouldBeFalse();
        var notABool = Base();
        notABool["STREAMSPACE_SESSION_LIMITS"] = "no";
        Should.Throw<AgentOptionsException>(() => From(notABool)).Message.ShouldBe("STREAMSPACE_SESSION_LIMITS must be true or false, got 'no'");
    }

    [Theory]
    [InlineData("StreamSpace:Agent:SessionMaxProcesses", "many", "StreamSpace__Agent__SessionMaxProcesses must be a whole number, got 'many'")]
    [InlineData("StreamSpace:Agent:KeepAliveTimeout", "banana", "StreamSpace__Agent__KeepAliveTimeout must be a duration ([d.]hh:mm:ss, e.g. 00:10:00 or 30.00:00:00), got 'banana'")]
    [InlineData("StreamSpace:Agent:SessionLimits", "nope", "StreamSpace__Agent__SessionLimits must be true or false, got 'nope'")]
    public void A_section_value_that_does_not_convert_is_named_as_it_is_set_with_what_it_takes(string key, string value, string expected)
    {
        var values = Base();
        values[key] = value;
        // Not the binder's "Failed to convert configuration value … to type 'System.Int32'".
        Should.Throw<AgentOptionsException>(() => From(values)).Message.ShouldBe($"invalid agent configuration: {expected}");
    }

    [Fact]
    public void Keep_alive_pings_must_be_answered_within_a_bounded_time()
    {
        var options = From(Base());
        options.KeepAliveTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        options.Validate();
        options.KeepAliveTimeout = TimeSpan.Zero;
        Should.Throw<AgentOptionsException>(options.Validate).Message.ShouldContain("KeepAliveTimeout must be positive");
        options.KeepAliveTimeout = Timeout.InfiniteTimeSpan;
        Should.Throw<AgentOptionsException>(options.Validate).Message.ShouldContain("KeepAliveTimeout must be positive");
    }

    [Fact]
    public void Non_numeric_number_is_a_clear_error()
    {
        Should.Throw<AgentOptionsException>(() => From(new() { ["STREAMSPACE_MAX_SESSIONS"] = "ten" }))
            .Message.ShouldContain("STREAMSPACE_MAX_SESSIONS");
    }
}
