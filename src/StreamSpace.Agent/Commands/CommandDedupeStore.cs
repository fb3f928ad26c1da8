using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using StreamSpace.Protocol;

namespace StreamSpace.Agent.Commands;

/// <summary>What to do with a received command.</summary>
internal enum CommandAdmission
{
    /// <summary>First time seen: execute it.</summary>
    Execute,
    /// <summary>Seen and still executing: only re-ack.</summary>
    AlreadyRunning,
    /// <summary>Seen and finished: re-ack and re-send the stored result.</summary>
    AlreadyFinished,
    /// <summary>
    /// First time seen, but the state folder could not record it: it must not execute (a redelivery after a restart
    /// could not know it ran). Answer the stored failed result, which names the reason. Never for a stop or a
    /// stream.open, which run unrecorded (see <see cref="CommandDedupeStore"/>).
    /// </summary>
    NotRecorded,
}

/// <summary>
/// At-most-once execution (contract §5, invariant 2): every command id is persisted in
/// <c>&lt;state&gt;/commands/</c> before it executes, with its result once it finishes, and kept for the
/// retention period (≥ 24 h) so a redelivery, even across an agent restart, never runs it twice.
/// </summary>
internal sealed class CommandDedupeStore
{
    /// <summary>Why a command that may have half-happened is answered failed instead of running again (docs/protocol.md).</summary>
    public const string InterruptedError = "the agent restarted while the command ran";
    /// <summary>Why a command is refused when its admission cannot be persisted; the I/O error follows.</summary>
    public const string NotRecordedError = "the agent cannot record commands in its state folder";

    private static readonly JsonSerializerOptions Json = new(ProtocolJson.Options);

    private readonly string _folder;
    private readonly TimeSpan _retention;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, CommandRecord> _records = new();
    /// <summary>Record files that could not be read at load (path → when found): their command ids are only known by hash.</summary>
    private readonly ConcurrentDictionary<string, DateTimeOffset> _unreadable = new();
    private readonly Lock _gate = new();

    public CommandDedupeStore(string stateFolder, TimeSpan retention, TimeProvider time, ILogger logger)
    {
        _folder = Path.Combine(stateFolder, "commands");
        _retention = retention;
        _time = time;
        _logger = logger;
    }

    /// <summary>
    /// Loads the persisted records. A command that was running when the agent died is finished as failed: it may have
    /// half-happened, and running it again would break at-most-once; only a hibernate or wake whose session the
    /// re-adopted <paramref name="inventory"/> shows in the state it asked for is finished as succeeded (see
    /// <see cref="InterruptedResult"/>). A command whose record cannot be read (cut short by a power loss, a broken
    /// disk) is failed too: it was seen, and it may have run. Stray temporary files (a crash before their rename, so
    /// before the command could run) are deleted.
    /// </summary>
    public void Load(IReadOnlyList<SessionInventoryItem> inventory)
    {
        var observed = inventory.ToDictionary(s => s.SessionId, s => s.State, StringComparer.Ordinal);
        Directory.CreateDirectory(_folder);
        if (!OperatingSystem.IsWindows())
        {
            // Only the agent reads its command history.
            File.SetUnixFileMode(_folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        foreach (var temp in Directory.EnumerateFiles(_folder, "*" + DurableFile.TempSuffix))
        {
            File.Delete(temp);
        }
        foreach (var file in Directory.EnumerateFiles(_folder, "*.json"))
        {
            CommandRecord? record;
            try
            {
                record = JsonSerializer.Deserialize<CommandRecord>(File.ReadAllText(file), Json);
            }
            catch (Exception ex) when (ex is JsonException or IOException)
            {
                record = null;
                _logger.LogWarning("Command record {File} is unreadable ({Error}): its command is answered as interrupted if it comes again",
                    Path.GetFileName(file), ex.Message);
            }
            if (record is null || PathOf(record.CommandId) != file)
            {
                _unreadable[file] = _time.GetUtcNow();
                continue;
            }
            if (record.Result is null)
            {
                record = record with { FinishedAt = _time.GetUtcNow(), Result = InterruptedResult(record, observed) };
                TryPersist(record);
            }
            _records[record.CommandId] = record;
        }
        Prune();
    }

    /// <summary>
    /// The answer to a command the agent died running. A start, hibernate or wake whose session is already in the state it
    /// asked for took effect (the runtime records a session only once its start succeeded, and a state only once it holds,
    /// and the session's later commands wait behind this one): it succeeded, the answer running it again would give.
    /// A start answered failed while the re-adopted session runs would show the user a failed session that runs on. Answered failed, the control plane would
    /// move the session back (hibernating → running) while its desktop stayed frozen, and reconciliation has no rule
    /// for running there and hibernated here. Anything else may have half-happened: failed, as interrupted.
    /// </summary>
    private ResultPayload InterruptedResult(CommandRecord record, Dictionary<string, string> observed)
    {
        var asked = record.Type switch
        {
            CommandTypes.SessionStart => ObservedStates.Running,
            CommandTypes.SessionHibernate => ObservedStates.Hibernated,
            CommandTypes.SessionWake => ObservedStates.Running,
            _ => null,
        };
        if (asked is not null && record.SessionId is { } sessionId && observed.GetValueOrDefault(sessionId) == asked)
        {
            _logger.LogInformation("Command {CommandId} ({Type}) was running when the agent stopped; session {SessionId} is {State}, so it succeeded",
                record.CommandId, record.Type, sessionId, asked);
            return new ResultPayload { CommandId = record.CommandId, Success = true };
        }
        return new ResultPayload { CommandId = record.CommandId, Success = false, Error = InterruptedError };
    }

    /// <summary>Registers the command (persisted before it may execute) or tells how it was seen before.</summary>
    public CommandAdmission Admit(CommandPayload command, out ResultPayload? storedResult)
    {
        lock (_gate)
        {
            if (_records.TryGetValue(command.CommandId, out var existing))
            {
                storedResult = existing.Result;
                return existing.Result is null ? CommandAdmission.AlreadyRunning : CommandAdmission.AlreadyFinished;
            }
            if (_unreadable.TryRemove(PathOf(command.CommandId), out var found))
            {
                var interrupted = new CommandRecord
                {
                    CommandId = command.CommandId, Type = command.Type, SessionId = command.SessionId, ReceivedAt = found, FinishedAt = found,
                    Result = new ResultPayload { CommandId = command.CommandId, Success = false, Error = InterruptedError },
                };
                _records[command.CommandId] = interrupted;
                TryPersist(interrupted);
                storedResult = interrupted.Result;
                return CommandAdmission.AlreadyFinished;
            }
            var record = new CommandRecord { CommandId = command.CommandId, Type = command.Type, SessionId = command.SessionId, ReceivedAt = _time.GetUtcNow() };
            try
            {
                Persist(record);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                if (RunsUnrecorded(command.Type))
                {
                    // Kept in memory, so a redelivery to this process is deduped as usual. Invariant 2 still holds after a
                    // restart forgets it: running a stop again ends what is already ended (success), and a stream.open
                    // again dials with a one-time token the control plane already took, so it is refused and opens nothing.
                    _logger.LogWarning("Cannot record command {CommandId} ({Type}) in {Folder}, running it anyway (a repeat does nothing): {Error}",
                        command.CommandId, command.Type, _folder, ex.Message);
                    _records[command.CommandId] = record;
                    storedResult = null;
                    return CommandAdmission.Execute;
                }
                // Not executed, so failing it is the truth; kept in memory so a redelivery gets the same answer.
                _logger.LogError("Cannot record command {CommandId} in {Folder}, refusing it: {Error}", command.CommandId, _folder, ex.Message);
                storedResult = new ResultPayload { CommandId = command.CommandId, Success = false, Error = $"{NotRecordedError}: {ex.Message}" };
                _records[command.CommandId] = record with { FinishedAt = _time.GetUtcNow(), Result = storedResult };
                return CommandAdmission.NotRecorded;
            }
            _records[command.CommandId] = record;
            storedResult = null;
            return CommandAdmission.Execute;
        }
    }

    /// <summary>
    /// Stores the result of an executed command. Never throws for the state folder: a result that cannot be persisted
    /// is still kept in memory and must still be sent; only a redelivery after an agent restart will miss it (and get
    /// the interrupted answer, since the running record is on disk).
    /// </summary>
    public void Complete(ResultPayload result)
    {
        lock (_gate)
        {
            if (!_records.TryGetValue(result.CommandId, out var record)) return;
            record = record with { Result = result, FinishedAt = _time.GetUtcNow() };
            _records[result.CommandId] = record;
            TryPersist(record);
        }
    }

    /// <summary>
    /// Commands run even when the state folder cannot record them, because running one twice changes nothing. Every
    /// session's home lives in the state folder, so one session filling its home must not stop viewers of all sessions
    /// (stream.open) or an admin's terminate (stop). A start, hibernate or wake repeated after a restart could undo
    /// what happened since (start a session stopped meanwhile, freeze one woken meanwhile): those are refused. A deleted
    /// user's home.delete frees space in that very folder, and its user can never need the home again.
    /// </summary>
    private static bool RunsUnrecorded(string type) => type is CommandTypes.SessionStop or CommandTypes.StreamOpen or CommandTypes.HomeDelete;

    /// <summary>Drops records finished longer ago than the retention period (unreadable ones: found that long ago).</summary>
    public void Prune()
    {
        var cutoff = _time.GetUtcNow() - _retention;
        foreach (var (file, found) in _unreadable)
        {
            if (found < cutoff)
            {
                lock (_gate)
                {
                    if (_unreadable.TryRemove(file, out _)) TryDelete(file);
                }
            }
        }
        foreach (var record in _records.Values)
        {
            if (record.FinishedAt is { } finished && finished < cutoff)
            {
                lock (_gate)
                {
                    _records.TryRemove(record.CommandId, out _);
                    TryDelete(PathOf(record.CommandId));
                }
            }
        }
    }

    public int Count => _records.Count;

    private void TryPersist(CommandRecord record)
    {
        try
        {
            Persist(record);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogError("Cannot record the result of command {CommandId} in {Folder}; it is kept in memory until the agent restarts: {Error}",
                record.CommandId, _folder, ex.Message);
        }
    }

    private void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("Cannot delete the expired command record {File}: {Error}", Path.GetFileName(file), ex.Message);
        }
    }

    private void Persist(CommandRecord record) =>
        DurableFile.Replace(PathOf(record.CommandId), JsonSerializer.SerializeToUtf8Bytes(record, Json));

    /// <summary>Command ids come from the network: hash them into file names instead of trusting them as paths.</summary>
    private string PathOf(string commandId) =>
        Path.Combine(_folder, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(commandId))) + ".json");
}
