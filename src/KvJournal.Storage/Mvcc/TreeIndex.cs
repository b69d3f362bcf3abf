using Google.Protobuf;

namespace KvJournal.Storage.Mvcc;

/// <summary>
/// Keys in byte order, each with its history (etcd's treeIndex). A two-level B-tree: sorted
/// leaves of up to <see cref="LeafCapacity"/> histories, found by binary search over each leaf's
/// first key. Seeking to a range's start is O(log n) and a scan walks contiguous arrays, so a
/// paged list or a paused scan resumes cheaply at any key (a SortedSet view costs O(view) to make).
/// Not thread-safe: the store's lock guards it.
/// </summary>
internal sealed class TreeIndex
{
    internal const int LeafCapacity = 256;
    // A leaf this small merges into a neighbour that has room, so mass deletes do not leave
    // thousands of near-empty leaves behind.
    private const int MergeBelow = LeafCapacity / 8;

    private sealed class Leaf
    {
        public readonly KeyHistory[] Items = new KeyHistory[LeafCapacity];
        public int Count;
        public ByteString First => Items[0].Key;
    }

    private Leaf[] _leaves = [new Leaf()];
    private int _leafCount = 1;
    // Bumped by every insert and removal; an enumerator that outlives a change throws.
    private int _version;

    public int Count { get; private set; }

    public KeyHistory? Get(ByteString key)
    {
        var leaf = _leaves[FindLeaf(key.Span)];
        int at = Search(leaf, key.Span);
        return at >= 0 ? leaf.Items[at] : null;
    }

    public KeyHistory GetOrAdd(ByteString key)
    {
        int li = FindLeaf(key.Span);
        var leaf = _leaves[li];
        int at = Search(leaf, key.Span);
        if (at >= 0) return leaf.Items[at];
        at = ~at;
        if (leaf.Count == LeafCapacity)
        {
            var right = Split(li);
            if (at > leaf.Count)
            {
                at -= leaf.Count;
                leaf = right;
            }
        }
        var h = new KeyHistory(key);
        Array.Copy(leaf.Items, at, leaf.Items, at + 1, leaf.Count - at);
        leaf.Items[at] = h;
        leaf.Count++;
        Count++;
        _version++;
        return h;
    }

    public void Remove(KeyHistory history)
    {
        int li = FindLeaf(history.Key.Span);
        var leaf = _leaves[li];
        int at = Search(leaf, history.Key.Span);
        if (at < 0) return;
        leaf.Count--;
        Array.Copy(leaf.Items, at + 1, leaf.Items, at, leaf.Count - at);
        leaf.Items[leaf.Count] = null!;
        Count--;
        _version++;
        if (leaf.Count < MergeBelow) MergeWithNeighbour(li);
    }

    /// <summary>Histories of the keys in <paramref name="range"/>, in key order.</summary>
    public Scan Range(KeyRange range)
    {
        if (range.IsSingleKey)
        {
            int li = FindLeaf(range.Key.Span);
            int at = Search(_leaves[li], range.Key.Span);
            return at >= 0 ? new Scan(this, li, at, single: true, end: null) : default;
        }
        if (range.End is not null && KeyBytes.Compare(range.End, range.Key) <= 0) return default;
        int leafIndex = FindLeaf(range.Key.Span);
        int start = Search(_leaves[leafIndex], range.Key.Span);
        return new Scan(this, leafIndex, start >= 0 ? start : ~start, single: false, range.End);
    }

    public Scan All() => new(this, 0, 0, single: false, end: null);

    // The last leaf whose first key is ≤ key (leaf 0 when key sorts before every key).
    private int FindLeaf(ReadOnlySpan<byte> key)
    {
        int lo = 1, hi = _leafCount - 1, found = 0;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_leaves[mid].First.Span.SequenceCompareTo(key) <= 0)
            {
                found = mid;
                lo = mid + 1;
            }
            else hi = mid - 1;
        }
        return found;
    }

    // Index of key in the leaf, or the bitwise complement of where it would go.
    private static int Search(Leaf leaf, ReadOnlySpan<byte> key)
    {
        int lo = 0, hi = leaf.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            int c = leaf.Items[mid].Key.Span.SequenceCompareTo(key);
            if (c == 0) return mid;
            if (c < 0) lo = mid + 1;
            else hi = mid - 1;
        }
        return ~lo;
    }

    // Moves the upper half of a full leaf into a new leaf just after it; returns the new leaf.
    private Leaf Split(int li)
    {
        var leaf = _leaves[li];
        var right = new Leaf();
        int half = leaf.Count / 2;
        right.Count = leaf.Count - half;
        Array.Copy(leaf.Items, half, right.Items, 0, right.Count);
        Array.Clear(leaf.Items, half, right.Count);
        leaf.Count = half;
        InsertLeaf(li + 1, right);
        return right;
    }

    private void InsertLeaf(int at, Leaf leaf)
    {
        if (_leafCount == _leaves.Length) Array.Resize(ref _leaves, _leaves.Length * 2);
        Array.Copy(_leaves, at, _leaves, at + 1, _leafCount - at);
        _leaves[at] = leaf;
        _leafCount++;
    }

    private void RemoveLeaf(int at)
    {
        _leafCount--;
        Array.Copy(_leaves, at + 1, _leaves, at, _leafCount - at);
        _leaves[_leafCount] = null!;
    }

    // Folds a small leaf into the following (or preceding) one when the two fit in one leaf with
    // room to spare; an empty leaf is dropped unless it is the only one.
    private void MergeWithNeighbour(int li)
    {
        var leaf = _leaves[li];
        if (_leafCount == 1) return;
        if (leaf.Count == 0)
        {
            RemoveLeaf(li);
            return;
        }
        int left = li + 1 < _leafCount ? li : li - 1;
        Leaf a = _leaves[left], b = _leaves[left + 1];
        if (a.Count + b.Count > LeafCapacity * 3 / 4) return;
        Array.Copy(b.Items, 0, a.Items, a.Count, b.Count);
        a.Count += b.Count;
        RemoveLeaf(left + 1);
    }

    /// <summary>
    /// A forward scan from a leaf position up to an exclusive end key. A struct, so a range scan
    /// allocates nothing; the index must not change while it runs (appending to a history is fine).
    /// </summary>
    public struct Scan
    {
        private readonly TreeIndex? _index;
        private readonly ByteString? _end;
        private readonly bool _single;
        private readonly int _version;
        private int _leaf;
        private int _pos;
        private bool _started;

        internal Scan(TreeIndex index, int leaf, int pos, bool single, ByteString? end)
        {
            _index = index;
            _leaf = leaf;
            _pos = pos;
            _single = single;
            _end = end;
            _version = index._version;
            _started = false;
            Current = null!;
        }

        public KeyHistory Current { get; private set; }

        public readonly Scan GetEnumerator() => this;

        public bool MoveNext()
        {
            if (_index is null) return false;
            if (_index._version != _version) throw new InvalidOperationException("the key index changed during a scan");
            if (_started)
            {
                if (_single) return false;
                _pos++;
            }
            _started = true;
            while (_leaf < _index._leafCount && _pos >= _index._leaves[_leaf].Count)
            {
                _leaf++;
                _pos = 0;
            }
            if (_leaf >= _index._leafCount) return false;
            var h = _index._leaves[_leaf].Items[_pos];
            if (_end is not null && KeyBytes.Compare(h.Key, _end) >= 0) return false;
            Current = h;
            return true;
        }
    }
}
