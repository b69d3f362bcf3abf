using Google.Protobuf;

namespace KvJournal.Storage.Mvcc;

/// <summary>One stored revision of a key: a put, or a tombstone left by a delete.</summary>
internal readonly struct KeyVersion(long modRevision, long createRevision, long version, long lease, ByteString value)
{
    /// <summary>Main revision of the write (sub-revisions are not visible on the KV API).</summary>
    public readonly long ModRevision = modRevision;
    public readonly long CreateRevision = createRevision;
    /// <summary>Writes since creation, 1 for the creating put; 0 marks a tombstone.</summary>
    public readonly long Version = version;
    public readonly long Lease = lease;
    public readonly ByteString Value = value;

    public bool IsTombstone => Version == 0;
}

/// <summary>
/// The history of one key, oldest first (etcd's keyIndex with its generations flattened).
/// </summary>
/// <remarks>
/// Example: put a@2, put a@3, delete a@4, put a@6 gives
/// [ {mod 2, create 2, ver 1}, {mod 3, create 2, ver 2}, {mod 4, tombstone}, {mod 6, create 6, ver 1} ].
/// Reading at revision 5 finds the tombstone at 4: a is absent. Compacting at 5 drops everything up
/// to and including that tombstone; compacting at 3 keeps {mod 3} because a read at 3 still needs it;
/// compacting at 4 keeps the tombstone, so a watch from 4 still sees the delete.
/// A key is modified at most once per revision (etcd refuses a txn that writes one key twice).
/// </remarks>
internal sealed class KeyHistory(ByteString key)
{
    private KeyVersion[] _versions = new KeyVersion[1];
    private int _count;

    public ByteString Key { get; } = key;
    public int Count => _count;
    public ref readonly KeyVersion Latest => ref _versions[_count - 1];

    /// <summary>The retained versions, oldest first.</summary>
    public ReadOnlySpan<KeyVersion> Versions => _versions.AsSpan(0, _count);

    /// <summary>True when the key exists (not deleted) at <paramref name="revision"/>.</summary>
    public bool TryGetLive(long revision, out KeyVersion version)
    {
        int i = IndexAtOrBefore(revision);
        if (i >= 0 && !_versions[i].IsTombstone)
        {
            version = _versions[i];
            return true;
        }
        version = default;
        return false;
    }

    /// <summary>
    /// The version written at exactly <paramref name="revision"/> and the one before it (a watch
    /// event and its prev_kv). False when compaction dropped that version.
    /// </summary>
    public bool TryGetWrittenAt(long revision, out KeyVersion version, out KeyVersion previous)
    {
        int i = IndexAtOrBefore(revision);
        if (i < 0 || _versions[i].ModRevision != revision)
        {
            version = previous = default;
            return false;
        }
        version = _versions[i];
        previous = i > 0 ? _versions[i - 1] : default;
        return true;
    }

    public void Append(in KeyVersion version)
    {
        if (_count == _versions.Length) Array.Resize(ref _versions, _count * 2);
        _versions[_count++] = version;
    }

    /// <summary>Removes and returns the newest version (an aborted txn's write).</summary>
    public KeyVersion RemoveLatest()
    {
        var v = _versions[--_count];
        _versions[_count] = default;
        return v;
    }

    /// <summary>
    /// Drops versions no read at or after <paramref name="compactRevision"/> can see.
    /// Returns the number of value bytes released; the history may become empty.
    /// </summary>
    public long Compact(long compactRevision)
    {
        int drop = RetainedFrom(compactRevision);
        if (drop == 0) return 0;
        long released = 0;
        for (int j = 0; j < drop; j++) released += _versions[j].Value.Length;
        Array.Copy(_versions, drop, _versions, 0, _count - drop);
        Array.Clear(_versions, _count - drop, drop);
        _count -= drop;
        return released;
    }

    /// <summary>
    /// The first version a compaction at <paramref name="compactRevision"/> keeps (<see cref="Count"/>
    /// when it keeps none): the newest at or below it, unless that is a tombstone written before it.
    /// </summary>
    public int RetainedFrom(long compactRevision) => RetainedFrom(Versions, compactRevision);

    /// <summary>The same rule over any versions oldest first (a copied history, as a snapshot holds).</summary>
    public static int RetainedFrom(ReadOnlySpan<KeyVersion> versions, long compactRevision)
    {
        int i = IndexAtOrBefore(versions, compactRevision);
        if (i < 0) return 0;
        // A tombstone written exactly at the compaction revision stays until the next compaction:
        // a watch from that revision still replays the delete (etcd does the same).
        ref readonly var v = ref versions[i];
        return v.IsTombstone && v.ModRevision < compactRevision ? i + 1 : i;
    }

    private int IndexAtOrBefore(long revision) => IndexAtOrBefore(Versions, revision);

    private static int IndexAtOrBefore(ReadOnlySpan<KeyVersion> versions, long revision)
    {
        int lo = 0, hi = versions.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (versions[mid].ModRevision <= revision) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found;
    }
}
