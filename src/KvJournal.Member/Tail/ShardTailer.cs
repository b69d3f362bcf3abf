using KvJournal.Journal;
using KvJournal.Member.Propose;
using KvJournal.Member.Reads;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Watch;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Tail;

/// <summary>
/// The chaser: reads durable entries from the journal in order, applies each to the store under
/// its write lock, dispatches the new revision to watchers, then wakes the proposer of the entry
/// (if it is this member) and the reads waiting for that position: a client that saw its write
/// acknowledged can count on the watchers having been handed it.
/// </summary>
/// <remarks>
/// Apply is deterministic, so a well-formed entry that fails (a fault applying it, a body that
/// does not parse) fails its request alone, the same way on every member. Fail-stop is kept for
/// what no member can apply alike: a damaged entry (checksum, format), an entry of an unknown kind,
/// or the journal's read failing. Entries are never skipped, since a member that skipped one
/// would diverge from every other.
/// </remarks>
internal sealed class ShardTailer(
    IJournal journal,
    MvccStore store,
    KvApplier applier,
    WatchHub watches,
    PendingProposals pending,
    AppliedPosition applied,
    ulong memberId,
    ILogger logger)
{
    private Exception? _failure;

    /// <summary>Why this member stopped applying, once it did; set before any waiter is failed.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once this member stopped applying, after <see cref="Failure"/> is set if it failed.</summary>
    public Task Stopped => _stopped.Task;

    private long _appliedEntries;

    /// <summary>Entries applied since this member started (what triggers state snapshots).</summary>
    public long AppliedEntries => Interlocked.Read(ref _appliedEntries);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        long position = applied.Value;
        try
        {
            await foreach (var raw in journal.ReadAsync(applied.Value, cancellationToken).ConfigureAwait(false))
            {
                position = raw.Position;
                var decoded = JournalEntryCodec.Decode(raw.Data);
                if (decoded.Status == EntryStatus.Damaged)
                    throw new JournalDamagedException($"journal entry at {journal.Describe(raw.Position)} is damaged: {decoded.Problem}");
                ApplyResult result;
                long before = store.CurrentRevision;
                store.Lock.EnterWriteLock();
                try
                {
                    result = decoded.Status == EntryStatus.Ok
                        ? applier.Apply(decoded.Entry!)
                        : applier.Unreadable(decoded.MemberId, decoded.RequestId, decoded.Problem!);
                    applier.Position = raw.Position; // a state snapshot taken under the lock names this position
                }
                finally
                {
                    store.Lock.ExitWriteLock();
                }
                if (result.Fault is { } fault && logger.IsEnabled(LogLevel.Error))
                    logger.LogError(fault, "journal entry at {Position} from member {MemberId:x} request {RequestId} could not be applied; its request failed on every member",
                        journal.Describe(raw.Position), decoded.MemberId, decoded.RequestId);
                if (store.CurrentRevision != before) watches.Notify(store.CurrentRevision);
                applied.Advance(raw.Position);
                Interlocked.Increment(ref _appliedEntries);
                if (decoded.MemberId == memberId) pending.Complete(decoded.RequestId, result);
            }
            Stop(new OperationCanceledException("shard stopped"));
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            Stop(ex);
        }
        catch (Exception ex)
        {
            if (logger.IsEnabled(LogLevel.Critical))
                logger.LogCritical(ex, "apply stopped at {Position}: this member proposes nothing more and fails its callers until it is restarted on a sound journal",
                    journal.Describe(position));
            Volatile.Write(ref _failure, ex);
            Stop(ex);
            throw;
        }
    }

    private void Stop(Exception reason)
    {
        pending.Stop(EtcdError.Stopped);
        applied.Stop(reason);
        watches.Stop(reason);
        _stopped.TrySetResult();
    }
}
