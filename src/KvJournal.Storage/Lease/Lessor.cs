using Google.Protobuf;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Lease;

/// <summary>One lease: its granted TTL, its deadline and the keys attached to it.</summary>
public sealed class LeaseEntry(long id, long ttlSeconds, long expiresAtUnixMs)
{
    public long Id { get; } = id;
    public long TtlSeconds { get; } = ttlSeconds;
    /// <summary>Wall-clock deadline (Unix ms), computed from journal entries only.</summary>
    public long ExpiresAtUnixMs { get; internal set; } = expiresAtUnixMs;
    internal HashSet<ByteString> Keys { get; } = [];

    public IReadOnlyCollection<ByteString> AttachedKeys => Keys;
}

/// <summary>
/// The lease table of one keyspace (etcd's lessor), changed only by the applier and guarded by
/// the store's lock like the rest of the applied state. Deadlines are absolute wall-clock times
/// taken from the entries, so a restart or another member computes the same ones.
/// </summary>
public sealed class Lessor : ILeaseLookup, IKeyLeaseTracker
{
    /// <summary>etcd's MaxLeaseTTL.</summary>
    public const long MaxTtlSeconds = 9_000_000_000;

    /// <summary>etcd's minimum: ceil(1.5 × the default 1 s election timeout).</summary>
    public const long MinTtlSeconds = 2;

    private readonly Dictionary<long, LeaseEntry> _leases = [];

    public bool Exists(long leaseId) => _leases.ContainsKey(leaseId);

    public LeaseEntry? Get(long leaseId) => _leases.GetValueOrDefault(leaseId);

    public IEnumerable<LeaseEntry> All => _leases.Values;

    public EtcdError Grant(long id, long ttlSeconds, long atUnixMs, out LeaseEntry? lease)
    {
        lease = null;
        if (ttlSeconds > MaxTtlSeconds) return EtcdError.LeaseTtlTooLarge;
        if (id == 0) return EtcdError.LeaseNotFound;
        if (_leases.ContainsKey(id)) return EtcdError.LeaseExists;
        long ttl = Math.Max(ttlSeconds, MinTtlSeconds);
        lease = new LeaseEntry(id, ttl, atUnixMs + ttl * 1000);
        _leases.Add(id, lease);
        return EtcdError.None;
    }

    /// <summary>Moves the deadline to <paramref name="atUnixMs"/> + TTL; a lease already past its deadline stays dead.</summary>
    public LeaseEntry? Renew(long id, long atUnixMs)
    {
        if (!_leases.TryGetValue(id, out var lease) || lease.ExpiresAtUnixMs <= atUnixMs) return null;
        lease.ExpiresAtUnixMs = atUnixMs + lease.TtlSeconds * 1000;
        return lease;
    }

    public void Remove(long id) => _leases.Remove(id);

    /// <summary>A lease as a state snapshot holds it; its keys attach as the restored keys are reported.</summary>
    internal void Restore(long id, long ttlSeconds, long expiresAtUnixMs) => _leases[id] = new LeaseEntry(id, ttlSeconds, expiresAtUnixMs);

    /// <summary>Up to <paramref name="max"/> leases whose deadline is at or before <paramref name="nowUnixMs"/>, earliest first.</summary>
    /// <remarks>One pass keeping the earliest <paramref name="max"/> in a heap: cheap under the read lock even with 100,000 due.</remarks>
    public List<long> Expired(long nowUnixMs, int max)
    {
        // A max-heap on (deadline, id): its top is the latest of the earliest ones kept so far.
        // Made at the first lease due: asked twice a second, this allocates nothing while none is.
        PriorityQueue<long, (long Deadline, long Id)>? kept = null;
        foreach (var l in _leases.Values)
        {
            if (l.ExpiresAtUnixMs > nowUnixMs) continue;
            kept ??= new(max + 1, LatestFirst.Instance);
            kept.Enqueue(l.Id, (l.ExpiresAtUnixMs, l.Id));
            if (kept.Count > max) kept.Dequeue();
        }
        if (kept is null) return [];
        var ids = new long[kept.Count];
        for (int i = ids.Length - 1; i >= 0; i--) ids[i] = kept.Dequeue();
        return [.. ids];
    }

    private sealed class LatestFirst : IComparer<(long Deadline, long Id)>
    {
        public static readonly LatestFirst Instance = new();
        public int Compare((long Deadline, long Id) x, (long Deadline, long Id) y) => y.CompareTo(x);
    }

    public void Moved(ByteString key, long from, long to)
    {
        if (from != 0 && _leases.TryGetValue(from, out var old)) old.Keys.Remove(key);
        if (to != 0 && _leases.TryGetValue(to, out var now)) now.Keys.Add(key);
    }
}
