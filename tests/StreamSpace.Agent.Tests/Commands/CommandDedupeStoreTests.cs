using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StreamSpace.Agent.Commands;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Tests.Commands;

public class CommandDedupeStoreTests : IDisposable
{
    private readonly TestState _state = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));

    /// <summary>A store on the test's state folder, loaded as the agent does after re-adopting <paramref name="inventory"/>.</summary>
    private CommandDedupeStore NewStore(params SessionInventoryItem[] inventory)
    {
        var store = new CommandDedupeStore(_state.Folder, TimeSpan.FromHours(24), _time, NullLogger.Instance);
        store.Load(inventory);
        return store;
    }

    private static CommandPayload Command(string id, string type = CommandTypes.SessionStop) => new() { CommandId = id, Type = type, SessionId = "s1" };

    [Fact]
    public void First_delivery_executes_redeliveries_do_not()
    {
        var store = NewStore();
        store.Admit(Command("c1"), out _).ShouldBe(CommandAdmission.Execute);
        store.Admit(Command("c1"), out var running).ShouldBe(CommandAdmission.AlreadyRunning);
        running.ShouldBeNull();

        store.Complete(new ResultPayload { CommandId = "c1", Success = true, Data = JsonSerializer.SerializeToElement(new { display = 20 }) });
        store.Admit(Command("c1"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Success.ShouldBeTrue();
        stored.Data!.Value.GetProperty("display").GetInt32().ShouldBe(20);
    }

    [Fact]
    public void Results_survive_a_restart()
    {
        var store = NewStore();
        store.Admit(Command("c1"), out _);
        store.Complete(new ResultPayload { CommandId = "c1", Success = false, Error = "nope" });

        var reopened = NewStore();
        reopened.Admit(Command("c1"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Error.ShouldBe("nope");
        reopened.Admit(Command("c2"), out _).ShouldBe(CommandAdmission.Execute);
    }

    [Fact]
    public void A_command_interrupted_by_a_restart_is_never_run_again_but_answered_as_failed()
    {
        NewStore().Admit(Command("c1"), out _).ShouldBe(CommandAdmission.Execute);

        var reopened = NewStore();
        reopened.Admit(Command("c1"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Success.ShouldBeFalse();
        stored.Error!.ShouldContain("restarted");
    }

    [Theory]
    [InlineData(CommandTypes.SessionHibernate, ObservedStates.Hibernated)]
    [InlineData(CommandTypes.SessionWake, ObservedStates.Running)]
    [InlineData(CommandTypes.SessionStart, ObservedStates.Running)] // the runtime records a session only once it started
    public void A_start_hibernate_or_wake_interrupted_after_it_took_effect_is_answered_succeeded(string type, string reached)
    {
        // The agent was killed after the runtime recorded the new state and before the result was stored.
        NewStore().Admit(Command("c1", type), out _).ShouldBe(CommandAdmission.Execute);

        var reopened = NewStore(new SessionInventoryItem { SessionId = "s1", State = reached });
        reopened.Admit(Command("c1", type), out var stored).ShouldBe(CommandAdmission.AlreadyFinished, "never run again");
        stored.ShouldBe(new ResultPayload { CommandId = "c1", Success = true });
        NewStore().Admit(Command("c1", type), out var again).ShouldBe(CommandAdmission.AlreadyFinished);
        again!.Success.ShouldBeTrue("the answer is stored: it holds across the next restart");
    }

    [Theory]
    [InlineData(CommandTypes.SessionHibernate, ObservedStates.Running)]    // killed before the processes stopped
    [InlineData(CommandTypes.SessionWake, ObservedStates.Hibernated)]      // killed before they were continued
    [InlineData(CommandTypes.SessionHibernate, null)]                      // the session is gone
    [InlineData(CommandTypes.SessionStop, ObservedStates.Running)]
    [InlineData(CommandTypes.SessionStart, null)]                          // killed before its session was recorded
    [InlineData(CommandTypes.SessionStart, ObservedStates.Hibernated)]     // not what a start leaves: never guessed
    public void An_interrupted_command_whose_session_is_not_where_it_asked_is_answered_as_interrupted(string type, string? observed)
    {
        NewStore().Admit(Command("c1", type), out _).ShouldBe(CommandAdmission.Execute);

        var reopened = NewStore(observed is null ? [] : [new SessionInventoryItem { SessionId = "s1", State = observed }]);
        reopened.Admit(Command("c1", type), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored.ShouldBe(new ResultPayload { CommandId = "c1", Success = false, Error = "the agent restarted while the command ran" });
    }

    [Fact]
    public void Finished_results_are_kept_24_hours_then_pruned()
    {
        var store = NewStore();
        store.Admit(Command("old"), out _);
        store.Complete(new ResultPayload { CommandId = "old", Success = true });
        _time.Advance(TimeSpan.FromHours(23));
        store.Admit(Command("young"), out _);
        store.Complete(new ResultPayload { CommandId = "young", Success = true });
        store.Admit(Command("busy"), out _);

        store.Prune();
        store.Count.ShouldBe(3);

        _time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        store.Prune();
        store.Count.ShouldBe(2);
        Directory.GetFiles(Path.Combine(_state.Folder, "commands"), "*.json").Length.ShouldBe(2);

        var reopened = NewStore();
        reopened.Admit(Command("old"), out _).ShouldBe(CommandAdmission.Execute);
        reopened.Admit(Command("young"), out _).ShouldBe(CommandAdmission.AlreadyFinished);
    }

    [Fact]
    public void A_command_the_state_folder_cannot_record_is_refused_with_the_reason_and_never_executed()
    {
        var store = NewStore();
        store.Admit(Command("running"), out _).ShouldBe(CommandAdmission.Execute);
        _state.BreakCommandsFolder();

        foreach (var type in new[] { CommandTypes.SessionStart, CommandTypes.SessionHibernate, CommandTypes.SessionWake })
        {
            store.Admit(Command("c-" + type, type), out var refused).ShouldBe(CommandAdmission.NotRecorded, type);
            refused!.Success.ShouldBeFalse();
            refused.Error!.ShouldStartWith("the agent cannot record commands in its state folder: ");
            store.Admit(Command("c-" + type, type), out var again).ShouldBe(CommandAdmission.AlreadyFinished, "a redelivery gets the same answer, never an execution");
            again.ShouldBe(refused);
        }

        // A finished command whose result cannot be written is still finished (in memory).
        Should.NotThrow(() => store.Complete(new ResultPayload { CommandId = "running", Success = true }));
        store.Admit(Command("running"), out var completed).ShouldBe(CommandAdmission.AlreadyFinished);
        completed!.Success.ShouldBeTrue();
        _time.Advance(TimeSpan.FromHours(25));
        Should.NotThrow(store.Prune);
    }

    [Theory]
    [InlineData(CommandTypes.SessionStop)]
    [InlineData(CommandTypes.StreamOpen)]
    [InlineData(CommandTypes.HomeDelete)] // frees space in that very folder
    public void A_stop_stream_open_or_home_delete_the_state_folder_cannot_record_still_runs_once_per_process(string type)
    {
        var store = NewStore();
        _state.BreakCommandsFolder(); // a session filled the disk its home shares with the state folder

        store.Admit(Command("c1", type), out var none).ShouldBe(CommandAdmission.Execute, "running it twice changes nothing, refusing it blocks every viewer and terminate");
        none.ShouldBeNull();
        store.Admit(Command("c1", type), out _).ShouldBe(CommandAdmission.AlreadyRunning, "still deduped in memory");
        store.Complete(new ResultPayload { CommandId = "c1", Success = true });
        store.Admit(Command("c1", type), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Success.ShouldBeTrue();
    }

    private string RecordFile(string commandId) => Path.Combine(_state.Folder, "commands",
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(commandId))) + ".json");

    [Theory]
    [InlineData("")]                        // renamed before its data reached the disk, then the power went
    [InlineData("{\"commandId\":\"c1\",\"ty")] // cut short
    public void A_command_whose_record_is_unreadable_is_answered_as_interrupted_never_run_again(string content)
    {
        NewStore().Admit(Command("other"), out _).ShouldBe(CommandAdmission.Execute); // creates the folder
        File.WriteAllText(RecordFile("c1"), content);

        var reopened = NewStore();
        reopened.Admit(Command("c1"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored.ShouldBe(new ResultPayload { CommandId = "c1", Success = false, Error = "the agent restarted while the command ran" });
        reopened.Admit(Command("c2"), out _).ShouldBe(CommandAdmission.Execute, "only that command's record was unreadable");

        // The answer replaced the unreadable record: it holds across the next restart too.
        NewStore().Admit(Command("c1"), out var again).ShouldBe(CommandAdmission.AlreadyFinished);
        again!.Error.ShouldBe("the agent restarted while the command ran");
    }

    [Fact]
    public void Unreadable_records_are_kept_for_the_retention_period_then_pruned()
    {
        NewStore();
        File.WriteAllText(RecordFile("c1"), "");
        var store = NewStore();
        _time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));
        store.Prune();
        File.Exists(RecordFile("c1")).ShouldBeFalse();
        store.Admit(Command("c1"), out _).ShouldBe(CommandAdmission.Execute);
    }

    [Fact]
    public void Stray_temporary_files_are_deleted_at_load_and_records_are_written_whole()
    {
        var store = NewStore();
        store.Admit(Command("c1"), out _).ShouldBe(CommandAdmission.Execute);
        store.Complete(new ResultPayload { CommandId = "c1", Success = true });
        var stray = RecordFile("c2") + ".tmp";
        File.WriteAllText(stray, "{\"commandId\":\"c2\",");

        var reopened = NewStore();
        File.Exists(stray).ShouldBeFalse();
        Directory.GetFiles(Path.Combine(_state.Folder, "commands")).ShouldBe([RecordFile("c1")]);
        reopened.Admit(Command("c1"), out var stored).ShouldBe(CommandAdmission.AlreadyFinished);
        stored!.Success.ShouldBeTrue();
        reopened.Admit(Command("c2"), out _).ShouldBe(CommandAdmission.Execute, "a crash before the rename came before the command could run");
    }

    [Fact]
    public void Records_are_readable_by_the_agents_account_only()
    {
        var store = NewStore();
        store.Admit(Command("c1"), out _).ShouldBe(CommandAdmission.Execute);
        store.Complete(new ResultPayload { CommandId = "c1", Success = true });
        // Whatever the folder's mode: the records name sessions, and through them their users.
        File.GetUnixFileMode(RecordFile("c1")).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    [Fact]
    public void Hostile_command_ids_never_become_paths()
    {
        var store = NewStore();
        store.Admit(Command("../../etc/passwd"), out _).ShouldBe(CommandAdmission.Execute);
        Directory.GetFiles(Path.Combine(_state.Folder, "commands")).Single().ShouldEndWith(".json");
        Path.GetFileName(Directory.GetFiles(Path.Combine(_state.Folder, "commands")).Single()).Length.ShouldBe(64 + 5);
    }

    public void Dispose() => _state.Dispose();
}
