using KvJournal.Journal;
using KvJournal.Member.Propose;
using KvJournal.Member.Reads;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Watch;

namespace KvJournal.Member.Tail;

/// <summary>
/// The chaser: reads durable entries from the journal in order, applies each to the store under
/// its write lock, dispatches the new revision to watchers, then wakes the proposer of the entry
/// (if it is this member) and the reads waiting for that position: a client that saw its write
/// acknowledged can count on the watchers having been handed it. Apply is fail-stop: an exception stops the shard; entries are
/// never skipped, since a member that skipped one would diverge from every other.
/// </summary>
internal sealed class ShardTailer(
    IJournal journal,
    MvccStore store,
    KvApplier applier,
    WatchHub watches,
    PendingProposals pending,
    AppliedPosition applied,
    ulong memberId)
{
    public Exception? Failure { get; private set; }

    private long _appliedEntries;

    /// <summary>Entries applied since this member started (what triggers state snapshots).</summary>
    public long AppliedEntries => Interlocked.Read(ref _appliedEntries);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var raw in journal.ReadAsync(applied.Value, cancellationToken).ConfigureAwait(false))
            {
                var entry = JournalEntryCodec.Decode(raw.Data.Span);
                ApplyResult result;
                long before = store.CurrentRevision;
                store.Lock.EnterWriteLock();
                try
                {
                    result = applier.Apply(entry);
                    applier.Position = raw.Position; // a state snapshot taken under the lock names this position
                }
                finally
                {
                    store.Lock.ExitWriteLock();
                }
                if (store.CurrentRevision != before) watches.Notify(store.CurrentRevision);
                applied.Advance(raw.Position);
                Interlocked.Increment(ref _appliedEntries);
                if (entry.MemberId == memberId) pending.Complete(entry.RequestId, result);
            }
            Stop(new OperationCanceledException("shard stopped"));
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            Stop(ex);
        }
        catch (Exception ex)
        {
            Failure = ex;
            Stop(ex);
            throw;
        }
    }

    private void Stop(Exception reason)
    {
        applied.Stop(reason);
        watches.Stop(reason);
        pending.FailAll(EtcdError.Stopped);
    }
}
