using System.Threading.Channels;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Wire;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Watch;

/// <summary>
/// Every watcher of one store (etcd's watchableStore): dispatches each applied revision to the
/// synced watchers, and catches lagging ones up from the store's change log.
/// </summary>
/// <remarks>
/// The applier calls <see cref="Notify"/> after each revision it applies, on its own thread and
/// before the write is acknowledged. Notify never blocks: a watcher whose queue is full is moved to
/// the unsynced set and replayed later from history, so a slow client stalls neither writes nor
/// other watchers. Catch-up reads the change log under the store's read lock in bounded batches
/// and queues the responses after releasing it (WatchHub.CatchUp.cs, with progress notifications).
/// Lock order: the store lock is never taken while holding <see cref="_lock"/>.
/// </remarks>
public sealed partial class WatchHub : IAsyncDisposable
{
    // Catch-up bounds per round: watchers considered (etcd's maxWatchersPerSync) and revisions read
    // (etcd's watchBatchMaxRevs); the work bound keeps each read-lock hold short.
    private const int CatchUpWatchers = 512;
    private const int CatchUpMaxRevisions = 1000;
    private const long CatchUpMaxWork = 200_000;

    private readonly MvccStore _store;
    private readonly Lock _lock = new();
    // Synced watchers, grouped by what they watch so a revision is matched once per range.
    private readonly Dictionary<ByteString, WatchGroup> _keyGroups = [];
    private readonly Dictionary<KeyRange, WatchGroup> _rangeGroups = [];
    private readonly HashSet<Watcher> _unsynced = [];
    private readonly HashSet<WatchStream> _streams = [];
    private readonly Channel<bool> _catchUpSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _catchUp;
    private readonly Task _progress;
    private readonly TimeProvider _time;
    private long _notified;
    private Exception? _stopped;

    /// <param name="time">The clock of the progress notifications.</param>
    public WatchHub(MvccStore store, TimeSpan progressNotifyInterval, TimeProvider time)
    {
        _store = store;
        _time = time;
        _notified = store.CurrentRevision;
        _catchUp = Task.Run(() => CatchUpLoopAsync(_stopping.Token));
        _progress = Task.Run(() => ProgressLoopAsync(progressNotifyInterval, _stopping.Token));
    }

    /// <summary>
    /// The store was loaded from a snapshot (a member's own, or a keyspace imported from etcd)
    /// before any watcher: watchers start from its revision, and one asking for an older one
    /// replays the history the snapshot holds instead of waiting for it as a future revision.
    /// </summary>
    public void Restored()
    {
        lock (_lock) _notified = _store.CurrentRevision;
    }

    /// <summary>Open streams and their watchers (for metrics).</summary>
    public (int Streams, int Watchers) Counts()
    {
        lock (_lock)
        {
            int watchers = 0;
            foreach (var s in _streams) watchers += s.Watchers.Count;
            return (_streams.Count, watchers);
        }
    }

    public WatchStream OpenStream()
    {
        var stream = new WatchStream(this);
        lock (_lock)
        {
            if (_stopped is not null) stream.Complete(_stopped);
            else _streams.Add(stream);
        }
        return stream;
    }

    // ---- stream requests ----

    internal void Create(WatchStream stream, WatchSpec spec)
    {
        lock (_lock)
        {
            long id = spec.WatchId;
            if (id == 0)
            {
                while (stream.Watchers.ContainsKey(stream.NextAutoId)) stream.NextAutoId++;
                id = stream.NextAutoId++;
            }
            else if (stream.Watchers.ContainsKey(id))
            {
                stream.Enqueue(CreateRefused(WatchErrors.DuplicateId));
                return;
            }

            // "From now" starts after the last dispatched revision, which the created header reports.
            long next = spec.StartRevision == 0 ? _notified + 1 : spec.StartRevision;
            var w = new Watcher(stream, id, spec, next);
            stream.Watchers.Add(id, w);
            stream.Enqueue(new WatchResponseFrame { Header = new ResponseHeader { Revision = _notified }, WatchId = id, Created = true });
            if (next > _notified) MakeSynced(w);
            else
            {
                _unsynced.Add(w);
                SignalCatchUp();
            }
        }
    }

    /// <summary>A create refused before any watcher exists (etcd: created and canceled, id -1).</summary>
    internal WatchResponseFrame CreateRefused(string reason) => new()
    {
        Header = new ResponseHeader { Revision = _notified },
        WatchId = -1,
        Created = true,
        Canceled = true,
        CancelReason = reason,
    };

    /// <summary>Queues a refusal for a create that failed validation.</summary>
    public void Refuse(WatchStream stream, string reason)
    {
        lock (_lock) stream.Enqueue(CreateRefused(reason));
    }

    internal void Cancel(WatchStream stream, long watchId)
    {
        lock (_lock)
        {
            // etcd ignores a cancel for an id the stream does not have.
            if (!stream.Watchers.TryGetValue(watchId, out var w)) return;
            Remove(w);
            stream.Enqueue(new WatchResponseFrame { Header = new ResponseHeader { Revision = _notified }, WatchId = watchId, Canceled = true });
            MaybeAnswerDeferredProgress(stream);
        }
    }

    internal void RequestProgress(WatchStream stream)
    {
        lock (_lock)
        {
            if (!TryAnswerProgress(stream)) stream.ProgressDeferred = true;
        }
    }

    internal void Close(WatchStream stream)
    {
        lock (_lock)
        {
            foreach (var w in stream.Watchers.Values) Unlink(w);
            stream.Watchers.Clear();
            _streams.Remove(stream);
            stream.Complete(null);
        }
    }

    // ---- dispatch from the applier ----

    /// <summary>
    /// Dispatches the changes of <paramref name="revision"/>, the revision just applied, to the
    /// synced watchers. Called by the applier thread (the store's only writer) after each revision.
    /// </summary>
    public void Notify(long revision)
    {
        var log = _store.Changes;
        int first = log.FirstAtOrAfter(revision), end = log.Count;
        lock (_lock)
        {
            if (revision <= _notified) return;
            if (first < end && (_keyGroups.Count > 0 || _rangeGroups.Count > 0))
            {
                var batch = new RevisionEvents(log, first, end);
                if (_keyGroups.Count > 0)
                {
                    for (int i = first; i < end; i++)
                    {
                        if (_keyGroups.TryGetValue(log[i].History.Key, out var g)) Deliver(g, revision, batch, i, i + 1);
                    }
                }
                foreach (var g in _rangeGroups.Values) Deliver(g, revision, batch, first, end);
                FlushSlow();
            }
            _notified = revision;
        }
    }

    // Scratch for Notify (applier thread, under _lock).
    private readonly List<Watcher> _slow = [];
    private readonly List<int> _matched = [];

    // Sends the events of [from, to) that fall in g's range to each synced watcher of g.
    private void Deliver(WatchGroup g, long revision, RevisionEvents batch, int from, int to)
    {
        var matched = _matched;
        matched.Clear();
        for (int i = from; i < to; i++)
        {
            if (g.Range.Contains(batch.Log[i].History.Key)) matched.Add(i);
        }
        if (matched.Count == 0) return;
        // Watchers without filters share one event list per prev_kv choice (read-only once built).
        List<EncodedEvent>? plain = null, withPrev = null;
        foreach (var w in g.Watchers)
        {
            if (revision < w.NextRevision) continue; // catch-up already delivered it
            List<EncodedEvent> events;
            if (w.Spec.NoPut || w.Spec.NoDelete) events = Collect(batch, matched, w);
            else if (w.Spec.PrevKv) events = withPrev ??= Collect(batch, matched, w);
            else events = plain ??= Collect(batch, matched, w);
            if (events.Count == 0) continue;
            if (w.Backlogged)
            {
                // Too slow to keep up: replay this revision and later ones from history instead.
                w.NextRevision = revision;
                _slow.Add(w);
                continue;
            }
            SendEvents(w, revision, events);
            w.NextRevision = revision + 1;
        }
    }

    private static List<EncodedEvent> Collect(RevisionEvents batch, List<int> matched, Watcher w)
    {
        var events = new List<EncodedEvent>(matched.Count);
        foreach (int i in matched)
        {
            var e = batch.Get(i, w.Spec.PrevKv);
            if (e.Bytes is not null && w.Wants(e.Type)) events.Add(e);
        }
        return events;
    }

    private void FlushSlow()
    {
        if (_slow.Count == 0) return;
        foreach (var w in _slow)
        {
            LeaveGroup(w);
            w.Synced = false;
            _unsynced.Add(w);
        }
        _slow.Clear();
        SignalCatchUp();
    }

    private static void SendEvents(Watcher w, long revision, List<EncodedEvent> events)
    {
        w.ProgressDue = false;
        w.Stream.EnqueueEvents(w, revision, events);
    }

    // Catch-up responses are cut at revision boundaries near this size, so a client with gRPC's
    // common 4 MiB receive limit can follow a long history (etcd sends up to 1000 revisions at once).
    private const int CatchUpResponseBytes = 1024 * 1024;

    private static void SendHistory(Watcher w, long headerRevision, List<EncodedEvent> events)
    {
        int start = 0;
        long bytes = 0;
        for (int i = 0; i < events.Count; i++)
        {
            bool newRevision = i > 0 && events[i].Revision != events[i - 1].Revision;
            if (newRevision && bytes >= CatchUpResponseBytes)
            {
                SendEvents(w, headerRevision, events.GetRange(start, i - start));
                start = i;
                bytes = 0;
            }
            bytes += events[i].Bytes.Length;
        }
        SendEvents(w, headerRevision, start == 0 ? events : events.GetRange(start, events.Count - start));
    }

    // ---- bookkeeping (under _lock) ----

    private void MakeSynced(Watcher w)
    {
        w.Synced = true;
        GroupOf(w.Spec.Range, create: true)!.Watchers.Add(w);
    }

    private void Remove(Watcher w)
    {
        Unlink(w);
        w.Stream.Watchers.Remove(w.Id);
    }

    private void Unlink(Watcher w)
    {
        w.Removed = true;
        if (w.Synced) LeaveGroup(w);
        else _unsynced.Remove(w);
    }

    // A synced watcher leaves its range group; an emptied group is dropped.
    private void LeaveGroup(Watcher w)
    {
        GroupOf(w.Spec.Range, create: false)?.Watchers.Remove(w);
        RemoveEmptyGroup(w.Spec.Range);
    }

    private WatchGroup? GroupOf(KeyRange range, bool create)
    {
        WatchGroup? g;
        if (range.IsSingleKey)
        {
            if (!_keyGroups.TryGetValue(range.Key, out g) && create) _keyGroups.Add(range.Key, g = new WatchGroup(range));
        }
        else if (!_rangeGroups.TryGetValue(range, out g) && create) _rangeGroups.Add(range, g = new WatchGroup(range));
        return g;
    }

    private void RemoveEmptyGroup(KeyRange range)
    {
        var g = GroupOf(range, create: false);
        if (g is null || g.Watchers.Count > 0) return;
        if (range.IsSingleKey) _keyGroups.Remove(range.Key);
        else _rangeGroups.Remove(range);
    }

    /// <summary>Ends every stream with <paramref name="reason"/> (the shard stopped).</summary>
    public void Stop(Exception reason)
    {
        lock (_lock)
        {
            _stopped = reason;
            foreach (var s in _streams) s.Complete(reason);
            _streams.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_catchUp, _progress).ConfigureAwait(false);
        _stopping.Dispose();
    }

    /// <summary>Synced watchers of one key range.</summary>
    private sealed class WatchGroup(KeyRange range)
    {
        public KeyRange Range { get; } = range;
        public HashSet<Watcher> Watchers { get; } = [];
    }

    /// <summary>
    /// The events of a stretch of the change log, encoded at most once in each form (with and
    /// without prev_kv) however many watchers receive them.
    /// </summary>
    private sealed class RevisionEvents(ChangeLog log, int first, int end)
    {
        private readonly EncodedEvent[] _plain = new EncodedEvent[end - first];
        private readonly EncodedEvent[] _withPrev = new EncodedEvent[end - first];
        private readonly bool[] _built = new bool[(end - first) * 2];

        public ChangeLog Log { get; } = log;

        /// <summary>The encoded event; <see cref="EncodedEvent.Bytes"/> is null when compaction dropped it.</summary>
        public EncodedEvent Get(int index, bool withPrevKv)
        {
            int slot = index - first;
            int flag = slot * 2 + (withPrevKv ? 1 : 0);
            var cache = withPrevKv ? _withPrev : _plain;
            if (!_built[flag])
            {
                var change = Log[index];
                if (MvccStore.ToEvent(change, withPrevKv) is { } e) cache[slot] = new EncodedEvent(change.Revision, e.Type, e.ToByteString());
                _built[flag] = true;
            }
            return cache[slot];
        }
    }
}

/// <summary>An mvccpb.Event encoded once, shared by every response that carries it.</summary>
internal readonly record struct EncodedEvent(long Revision, Event.Types.EventType Type, ByteString Bytes);

/// <summary>Cancel reasons etcd's mvcc layer gives for a refused create (watcher.go).</summary>
public static class WatchErrors
{
    public const string DuplicateId = "mvcc: duplicate watch ID provided on the WatchStream";
    public const string EmptyRange = "mvcc: watcher range is empty";
}
