using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Wire;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Watch;

// Catching lagging watchers up from the change log, and progress notifications.
public sealed partial class WatchHub
{
    // ---- catch-up from history ----

    internal void SignalCatchUp() => _catchUpSignal.Writer.TryWrite(true);

    private async Task CatchUpLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                while (CatchUpOnce()) { }
                // Waits for a signal (new lagging watcher, room freed); the timeout is only a backstop.
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromMilliseconds(100));
                try
                {
                    await _catchUpSignal.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
                    _catchUpSignal.Reader.TryRead(out _);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested) { }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    /// <summary>One bounded round of catch-up; true when it moved some watcher forward.</summary>
    internal bool CatchUpOnce()
    {
        var batch = new List<Watcher>();
        lock (_lock)
        {
            foreach (var w in _unsynced)
            {
                if (w.Backlogged) continue;
                batch.Add(w);
                if (batch.Count == CatchUpWatchers) break;
            }
        }
        if (batch.Count == 0) return false;

        var found = new List<EncodedEvent>?[batch.Count];
        long current, compacted, readTo;
        _store.Lock.EnterReadLock();
        try
        {
            current = _store.CurrentRevision;
            compacted = _store.CompactRevision;
            readTo = ReadHistory(batch, compacted, current, found);
        }
        finally
        {
            _store.Lock.ExitReadLock();
        }

        bool progressed = false;
        lock (_lock)
        {
            for (int k = 0; k < batch.Count; k++)
            {
                var w = batch[k];
                if (w.Removed) continue;
                progressed = true;
                if (w.NextRevision < compacted)
                {
                    // etcd: the watcher is dropped with the compaction point; the client sees it canceled.
                    w.Stream.Enqueue(new WatchResponseFrame { Header = new ResponseHeader(), WatchId = w.Id, CompactRevision = compacted, Canceled = true });
                    Remove(w);
                    MaybeAnswerDeferredProgress(w.Stream);
                    continue;
                }
                if (found[k] is { Count: > 0 } events) SendHistory(w, current, events);
                if (readTo + 1 > w.NextRevision) w.NextRevision = readTo + 1;
                if (w.NextRevision > _notified)
                {
                    _unsynced.Remove(w);
                    MakeSynced(w);
                    MaybeAnswerDeferredProgress(w.Stream);
                }
            }
        }
        return progressed;
    }

    // Collects, per watcher, the logged events from its next revision on, up to a revision bound;
    // returns the last revision read. The caller holds the store's read lock.
    private long ReadHistory(List<Watcher> batch, long compacted, long current, List<EncodedEvent>?[] found)
    {
        long from = long.MaxValue;
        foreach (var w in batch)
        {
            if (w.NextRevision >= compacted && w.NextRevision < from) from = w.NextRevision;
        }
        if (from == long.MaxValue || from > current) return current;

        var log = _store.Changes;
        long limit = Math.Min(current, from + CatchUpMaxRevisions - 1);
        long work = 0, readTo = from - 1;
        int i = log.FirstAtOrAfter(from);
        var events = new RevisionEvents(log, i, log.FirstAtOrAfter(limit + 1));
        while (i < log.Count)
        {
            long rev = log[i].Revision;
            if (rev > limit || work >= CatchUpMaxWork) break;
            // A revision is read whole, so no response splits one.
            for (; i < log.Count && log[i].Revision == rev; i++)
            {
                var key = log[i].History.Key;
                for (int k = 0; k < batch.Count; k++)
                {
                    var w = batch[k];
                    if (rev < w.NextRevision || !w.Spec.Range.Contains(key)) continue;
                    var e = events.Get(i, w.Spec.PrevKv);
                    if (e.Bytes is not null && w.Wants(e.Type)) (found[k] ??= []).Add(e);
                }
                work += batch.Count;
            }
            readTo = rev;
        }
        // Nothing logged past the last change read means the watchers have seen up to the head.
        return i >= log.Count ? current : readTo;
    }

    // ---- progress ----

    private async Task ProgressLoopAsync(TimeSpan interval, CancellationToken cancellationToken)
    {
        if (interval <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(interval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false)) ProgressTick();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    // etcd's ticker: a watcher asking for progress notifications that got no events since the last
    // tick hears the current revision, if it is synced and the revision is not before its start.
    private void ProgressTick()
    {
        lock (_lock)
        {
            foreach (var s in _streams)
            {
                foreach (var w in s.Watchers.Values)
                {
                    if (!w.Spec.ProgressNotify) continue;
                    if (w.ProgressDue && w.CanReportProgressAt(_notified))
                        s.Enqueue(new WatchResponseFrame { Header = new ResponseHeader { Revision = _notified }, WatchId = w.Id });
                    w.ProgressDue = true;
                }
            }
        }
    }

    private bool TryAnswerProgress(WatchStream stream)
    {
        foreach (var w in stream.Watchers.Values)
        {
            if (!w.CanReportProgressAt(_notified)) return false;
        }
        // etcd answers through the stream's first watcher: no watchers, no answer.
        if (stream.Watchers.Count > 0)
            stream.Enqueue(new WatchResponseFrame { Header = new ResponseHeader { Revision = _notified }, WatchId = -1 });
        return true;
    }

    private void MaybeAnswerDeferredProgress(WatchStream stream)
    {
        if (stream.ProgressDeferred && TryAnswerProgress(stream)) stream.ProgressDeferred = false;
    }
}
