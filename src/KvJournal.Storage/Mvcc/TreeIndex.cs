using Google.Protobuf;

namespace KvJournal.Storage.Mvcc;

/// <summary>
/// Keys in byte order, each with its history (etcd's treeIndex). Backed by a red-black tree
/// (SortedSet) for now; the interface is what the store needs, so a B+tree can replace it.
/// Not thread-safe: the store's lock guards it.
/// </summary>
internal sealed class TreeIndex
{
    private sealed class ByKey : IComparer<KeyHistory>
    {
        public int Compare(KeyHistory? x, KeyHistory? y)
        {
            if (ReferenceEquals(x, y)) return 0;
            if (ReferenceEquals(x, PastEnd)) return 1;
            if (ReferenceEquals(y, PastEnd)) return -1;
            return KeyBytes.Compare(x!.Key, y!.Key);
        }
    }

    // Sentinel that sorts after every key: the upper bound of an open-ended range.
    private static readonly KeyHistory PastEnd = new(ByteString.Empty);
    private readonly SortedSet<KeyHistory> _keys = new(new ByKey());

    public int Count => _keys.Count;

    public KeyHistory? Get(ByteString key) => _keys.TryGetValue(new KeyHistory(key), out var h) ? h : null;

    public KeyHistory GetOrAdd(ByteString key)
    {
        var probe = new KeyHistory(key);
        if (_keys.TryGetValue(probe, out var existing)) return existing;
        _keys.Add(probe);
        return probe;
    }

    public void Remove(KeyHistory history) => _keys.Remove(history);

    /// <summary>Histories of the keys in <paramref name="range"/>, in key order.</summary>
    public IEnumerable<KeyHistory> Range(KeyRange range)
    {
        if (range.IsSingleKey)
        {
            var h = Get(range.Key);
            return h is null ? [] : [h];
        }
        var low = new KeyHistory(range.Key);
        if (range.End is null) return _keys.GetViewBetween(low, PastEnd);
        if (KeyBytes.Compare(range.End, range.Key) <= 0) return [];
        return ExcludeUpper(_keys.GetViewBetween(low, new KeyHistory(range.End)), range.End);
    }

    public IEnumerable<KeyHistory> All() => _keys;

    // GetViewBetween includes its upper bound; a range end is exclusive.
    private static IEnumerable<KeyHistory> ExcludeUpper(SortedSet<KeyHistory> view, ByteString end)
    {
        foreach (var h in view)
        {
            if (KeyBytes.Compare(h.Key, end) >= 0) yield break;
            yield return h;
        }
    }
}
