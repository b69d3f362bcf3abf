using Google.Protobuf;
using Mvccpb;

namespace KvJournal.Storage.Mvcc;

/// <summary>
/// The in-memory multi-version keyspace with etcd's revision arithmetic.
/// </summary>
/// <remarks>
/// Revisions: an empty store is at revision 1; every txn that changes at least one key (a put, or
/// a delete that removes something) takes the next revision, shared by all its changes. Reads
/// at any revision ≥ <see cref="CompactRevision"/> and ≤ <see cref="CurrentRevision"/> are exact.
/// Concurrency: one applier writes under <see cref="Lock"/>'s write lock; readers hold its read lock.
/// </remarks>
public sealed class MvccStore
{
    private readonly TreeIndex _index = new();
    private readonly ChangeLog _changes = new();

    /// <summary>Guards every field of the store. Lock order: this lock is never held while waiting.</summary>
    public ReaderWriterLockSlim Lock { get; } = new(LockRecursionPolicy.NoRecursion);

    /// <summary>Revision of the last change (etcd's currentRev); 1 when nothing was ever written.</summary>
    public long CurrentRevision { get; private set; } = 1;

    /// <summary>Reads below this revision fail with compacted (etcd's compactMainRev, -1 = never compacted).</summary>
    public long CompactRevision { get; private set; } = -1;

    /// <summary>Bytes of keys and values held, every retained version counted (the quota's measure).</summary>
    public long SizeBytes { get; private set; }

    public int KeyCount => _index.Count;

    /// <summary>Told, at the end of each write txn, which keys changed lease (the lessor keeps key sets).</summary>
    public IKeyLeaseTracker? LeaseTracker { get; set; }

    /// <summary>Starts a txn; a writable one must be ended with <see cref="MvccTxn.End"/> by the applier.</summary>
    public MvccTxn Begin(bool writable) => new(this, writable, yieldEvery: 0);

    /// <summary>
    /// A write txn whose changes take <paramref name="revision"/> (above the current one): a
    /// mirror applies each source revision at the source's own number, gaps included.
    /// </summary>
    public MvccTxn BeginAt(long revision)
    {
        if (revision <= CurrentRevision) throw new ArgumentOutOfRangeException(nameof(revision), $"revision {revision} is not above the current {CurrentRevision}");
        return new(this, writable: true, yieldEvery: 0, beginRevision: revision - 1);
    }

    /// <summary>
    /// Starts a read txn whose long range scans briefly release the read lock every
    /// <paramref name="keys"/> keys, so a waiting writer gets in; the scan resumes after the last
    /// key it read, still at its revision. Only for a caller that holds the read lock itself and
    /// reads nothing else that must be consistent across the scan.
    /// </summary>
    public MvccTxn BeginYieldingRead(int keys) => new(this, writable: false, yieldEvery: keys);

    /// <summary>
    /// Compacts history below <paramref name="revision"/>; the caller checked the bounds. Reads
    /// below it are refused and the change log is trimmed at once; the old versions themselves are
    /// dropped <see cref="CompactStepKeys"/> keys at a time, one step per applied entry
    /// (<see cref="CompactStep"/>), so a compaction of millions of versions never holds up the
    /// entries behind it. Every member takes the same steps at the same entries, so their states
    /// (sizes, quota) stay identical; what a read sees never depends on how far the steps got.
    /// </summary>
    public void Compact(long revision)
    {
        CompactRevision = revision;
        _changes.TrimBelow(revision);
        _compactingTo = revision;
        _compactFrom = FirstKey;
        CompactStep();
    }

    /// <summary>Keys a compaction step goes through.</summary>
    public const int CompactStepKeys = 10_000;

    private static readonly ByteString FirstKey = ByteString.CopyFrom(0);
    // The compaction in progress (0: none) and the first key it has not reached.
    private long _compactingTo;
    private ByteString _compactFrom = FirstKey;

    /// <summary>Drops the old versions of the next keys of a compaction in progress; the applier calls it once per entry.</summary>
    public void CompactStep()
    {
        if (_compactingTo == 0) return;
        List<KeyHistory>? emptied = null;
        int keys = 0;
        ByteString? next = null;
        foreach (var h in _index.Range(KeyRange.FromRequest(_compactFrom, FirstKey)))
        {
            if (keys++ == CompactStepKeys)
            {
                next = h.Key;
                break;
            }
            SizeBytes -= h.Compact(_compactingTo);
            if (h.Count == 0) (emptied ??= []).Add(h);
        }
        if (next is null) _compactingTo = 0;
        else _compactFrom = next;
        if (emptied is null) return;
        foreach (var h in emptied)
        {
            _index.Remove(h);
            SizeBytes -= h.Key.Length;
        }
    }

    /// <summary>The compaction in progress, for a state snapshot: its revision (0: none) and the first key it has not reached.</summary>
    public (long To, ByteString From) Compacting => (_compactingTo, _compactFrom);

    /// <summary>
    /// CRC-32C over every retained version at or below <paramref name="revision"/>, keys in order:
    /// key, then per version its revisions, version, lease and value. Members that applied the
    /// same journal get the same hash (etcd's HashKV purpose: detect divergence), though the
    /// numbers differ from etcd's, whose hash covers its bbolt encoding. Caller holds the read lock.
    /// </summary>
    public uint HashKv(long revision)
    {
        uint crc = 0;
        foreach (var h in _index.All())
        {
            bool any = false;
            // The versions the last compaction keeps, however far its steps have got.
            foreach (ref readonly var v in h.Versions[h.RetainedFrom(CompactRevision)..])
            {
                if (v.ModRevision > revision) break;
                if (!any)
                {
                    crc = Crc32C.Append(crc, h.Key.Span);
                    any = true;
                }
                crc = Crc32C.Append(crc, v.ModRevision);
                crc = Crc32C.Append(crc, v.CreateRevision);
                crc = Crc32C.Append(crc, v.Version);
                crc = Crc32C.Append(crc, v.Lease);
                crc = Crc32C.Append(crc, v.Value.Span);
            }
        }
        return crc;
    }

    /// <summary>Every key's history in key order (a state snapshot's keys); read under the lock.</summary>
    internal TreeIndex.Scan Histories => _index.All();

    /// <summary>Loads one key's retained versions into an empty store being restored from a snapshot.</summary>
    internal void RestoreKey(ByteString key, IEnumerable<KeyVersion> versions)
    {
        var h = _index.GetOrAdd(key);
        SizeBytes += key.Length;
        foreach (var v in versions)
        {
            h.Append(v);
            SizeBytes += v.Value.Length;
        }
    }

    /// <summary>Appends to the restored change log: <paramref name="key"/> changed at <paramref name="revision"/>.</summary>
    internal void RestoreChange(long revision, ByteString key) =>
        _changes.Append(revision, _index.Get(key) ?? throw new InvalidDataException("snapshot change names a key it does not hold"));

    internal void RestoreRevisions(long current, long compacted, long compactingTo, ByteString compactFrom)
    {
        CurrentRevision = current;
        CompactRevision = compacted;
        _compactingTo = compactingTo;
        _compactFrom = compactingTo == 0 || compactFrom.IsEmpty ? FirstKey : compactFrom;
    }

    /// <summary>Changes since the last compaction, by revision; read under the lock (or by the applier).</summary>
    internal ChangeLog Changes => _changes;

    /// <summary>
    /// The watch event for <paramref name="change"/>, with the key's previous live value when asked;
    /// null when compaction has dropped the change. A create carries no prev_kv (none exists).
    /// </summary>
    internal static Event? ToEvent(in Change change, bool withPrevKv)
    {
        var h = change.History;
        if (!h.TryGetWrittenAt(change.Revision, out var v, out var prev)) return null;
        var e = v.IsTombstone
            ? new Event { Type = Event.Types.EventType.Delete, Kv = new KeyValue { Key = h.Key, ModRevision = v.ModRevision } }
            : new Event { Type = Event.Types.EventType.Put, Kv = ToKeyValue(h, v, keysOnly: false) };
        if (withPrevKv && prev.ModRevision != 0 && !prev.IsTombstone) e.PrevKv = ToKeyValue(h, prev, keysOnly: false);
        return e;
    }

    internal static KeyValue ToKeyValue(KeyHistory h, in KeyVersion v, bool keysOnly) => new()
    {
        Key = h.Key,
        CreateRevision = v.CreateRevision,
        ModRevision = v.ModRevision,
        Version = v.Version,
        Lease = v.Lease,
        Value = keysOnly ? ByteString.Empty : v.Value,
    };

    /// <summary>
    /// A read or write transaction over the store (etcd's TxnRead / TxnWrite). Reads in a write txn
    /// see its own earlier writes at revision <c>begin + 1</c>.
    /// </summary>
    public sealed class MvccTxn
    {
        private readonly MvccStore _store;
        private readonly bool _writable;
        private readonly int _yieldEvery;
        private readonly int _changeMark;
        private int _changes;
        // Histories this txn appended to, in order, so an aborted txn can take its writes back.
        private List<KeyHistory>? _touched;

        internal MvccTxn(MvccStore store, bool writable, int yieldEvery, long beginRevision = -1)
        {
            _store = store;
            _writable = writable;
            _yieldEvery = yieldEvery;
            BeginRevision = beginRevision >= 0 ? beginRevision : store.CurrentRevision;
            _changeMark = store._changes.Count;
        }

        public long BeginRevision { get; }

        public bool HasChanges => _changes > 0;

        /// <summary>The revision reads see now: the begin revision, plus one once this txn changed something.</summary>
        public long ReadRevision => _changes > 0 ? BeginRevision + 1 : BeginRevision;

        public long CompactRevision => _store.CompactRevision;

        /// <summary>
        /// Keys live in <paramref name="range"/> at <paramref name="atRevision"/> (≤ 0 = now), in key order;
        /// at most <paramref name="limit"/> (≤ 0 = all) go to <paramref name="output"/>. Returns the
        /// count of all live keys in the range, unaffected by the limit.
        /// </summary>
        public StoreStatus Range(KeyRange range, long atRevision, long limit, bool countOnly, bool keysOnly, List<KeyValue>? output, out long count)
        {
            count = 0;
            long current = ReadRevision;
            if (atRevision > current) return StoreStatus.FutureRevision;
            long rev = atRevision <= 0 ? current : atRevision;
            if (rev < _store.CompactRevision) return StoreStatus.Compacted;
            var scan = range;
            long seen = 0;
            while (true)
            {
                bool paused = false;
                foreach (var h in _store._index.Range(scan))
                {
                    if (h.TryGetLive(rev, out var v))
                    {
                        count++;
                        if (!countOnly && output is not null && (limit <= 0 || output.Count < limit))
                            output.Add(ToKeyValue(h, v, keysOnly));
                    }
                    if (_yieldEvery > 0 && ++seen % _yieldEvery == 0)
                    {
                        scan = scan.After(h.Key);
                        paused = true;
                        break;
                    }
                }
                if (!paused) return StoreStatus.Ok;
                // A writer waiting for the lock goes first; the index may change meanwhile, so the
                // scan resumes from a fresh view after the last key. Reading at rev stays exact
                // unless a compaction passed it.
                _store.Lock.ExitReadLock();
                _store.Lock.EnterReadLock();
                if (rev < _store.CompactRevision) return StoreStatus.Compacted;
            }
        }

        /// <summary>
        /// Up to <paramref name="max"/> keys live in <paramref name="range"/> at <paramref name="atRevision"/>,
        /// in key order, without counting the rest (a page of a long scan such as a snapshot).
        /// </summary>
        public StoreStatus Page(KeyRange range, long atRevision, int max, List<KeyValue> output)
        {
            if (atRevision > ReadRevision) return StoreStatus.FutureRevision;
            if (atRevision < _store.CompactRevision) return StoreStatus.Compacted;
            foreach (var h in _store._index.Range(range))
            {
                if (output.Count >= max) break;
                if (h.TryGetLive(atRevision, out var v)) output.Add(ToKeyValue(h, v, keysOnly: false));
            }
            return StoreStatus.Ok;
        }

        /// <summary>The live version of one key now, as seen by this txn.</summary>
        public KeyValue? Get(ByteString key)
        {
            var h = _store._index.Get(key);
            return h is not null && h.TryGetLive(ReadRevision, out var v) ? ToKeyValue(h, v, keysOnly: false) : null;
        }

        public void Put(ByteString key, ByteString value, long lease)
        {
            EnsureWritable();
            var h = _store._index.GetOrAdd(key);
            long create = BeginRevision + 1, version = 1;
            if (h.Count > 0)
            {
                ref readonly var last = ref h.Latest;
                if (!last.IsTombstone)
                {
                    create = last.CreateRevision;
                    version = last.Version + 1;
                }
            }
            Append(h, value, lease, create, version);
        }

        /// <summary>A put whose create revision and version are given (a mirror copies the source's).</summary>
        public void PutVersion(ByteString key, ByteString value, long lease, long createRevision, long version)
        {
            EnsureWritable();
            Append(_store._index.GetOrAdd(key), value, lease, createRevision, version);
        }

        private void Append(KeyHistory h, ByteString value, long lease, long createRevision, long version)
        {
            long rev = BeginRevision + 1;
            if (h.Count == 0) _store.SizeBytes += h.Key.Length;
            h.Append(new KeyVersion(rev, createRevision, version, lease, value));
            _store.SizeBytes += value.Length;
            _store._changes.Append(rev, h);
            (_touched ??= []).Add(h);
            _changes++;
        }

        /// <summary>Deletes the live keys in the range (leaving tombstones); returns how many.</summary>
        public long DeleteRange(KeyRange range)
        {
            EnsureWritable();
            long rev = BeginRevision + 1;
            // Read before this delete's own tombstones count as changes (ReadRevision moves with them).
            long read = ReadRevision;
            long deleted = 0;
            // Appending to a history does not change the index, so tombstones go in during the scan.
            foreach (var h in _store._index.Range(range))
            {
                if (!h.TryGetLive(read, out _)) continue;
                h.Append(new KeyVersion(rev, 0, 0, 0, ByteString.Empty));
                _store._changes.Append(rev, h);
                (_touched ??= []).Add(h);
                deleted++;
            }
            _changes += (int)deleted;
            return deleted;
        }

        /// <summary>
        /// Takes back every write of this txn, newest first, leaving the store as it was at begin.
        /// The txn then ends with no change.
        /// </summary>
        public void Abort()
        {
            if (_touched is null) return;
            _store._changes.TruncateTo(_changeMark);
            for (int i = _touched.Count - 1; i >= 0; i--)
            {
                var h = _touched[i];
                _store.SizeBytes -= h.RemoveLatest().Value.Length;
                if (h.Count == 0)
                {
                    _store._index.Remove(h);
                    _store.SizeBytes -= h.Key.Length;
                }
            }
            _touched = null;
            _changes = 0;
        }

        /// <summary>Ends a write txn: the store moves to the next revision if anything changed.</summary>
        public void End()
        {
            if (!_writable || _changes == 0) return;
            _store.CurrentRevision = BeginRevision + 1;
            if (_store.LeaseTracker is { } tracker) ReportLeaseMoves(tracker);
        }

        // Each changed key: the lease of its version before this txn, and of its version now
        // (0 for none or deleted). A key changes at most once per txn.
        private void ReportLeaseMoves(IKeyLeaseTracker tracker)
        {
            var log = _store._changes;
            for (int i = _changeMark; i < log.Count; i++)
            {
                var h = log[i].History;
                ref readonly var now = ref h.Latest;
                h.TryGetWrittenAt(now.ModRevision, out _, out var before);
                long from = before.IsTombstone ? 0 : before.Lease;
                long to = now.IsTombstone ? 0 : now.Lease;
                if (from != to) tracker.Moved(h.Key, from, to);
            }
        }

        private void EnsureWritable()
        {
            if (!_writable) throw new InvalidOperationException("write in a read-only txn");
        }
    }
}

/// <summary>Keeps, per lease, the keys whose live version is attached to it.</summary>
public interface IKeyLeaseTracker
{
    /// <summary><paramref name="key"/> moved from lease <paramref name="from"/> to <paramref name="to"/> (0 = none).</summary>
    void Moved(ByteString key, long from, long to);
}

/// <summary>Expected outcomes of a store read; not exceptions.</summary>
public enum StoreStatus : byte
{
    Ok,
    Compacted,
    FutureRevision,
}
