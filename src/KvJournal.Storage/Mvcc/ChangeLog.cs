namespace KvJournal.Storage.Mvcc;

/// <summary>One key changed at one revision; the key's history holds the value and its predecessor.</summary>
internal readonly struct Change(long revision, KeyHistory history)
{
    public readonly long Revision = revision;
    public readonly KeyHistory History = history;
}

/// <summary>
/// Every change since the last compaction in revision order (within a revision, in the order the
/// txn made them): the store's history seen by revision instead of by key, which is what watchers
/// replay. 16 bytes per change: values stay in the key histories.
/// </summary>
internal sealed class ChangeLog
{
    private Change[] _items = new Change[1024];
    private int _head;
    private int _tail;

    /// <summary>Changes held; also the mark an aborted txn truncates back to.</summary>
    public int Count => _tail - _head;

    public Change this[int index] => _items[_head + index];

    public void Append(long revision, KeyHistory history)
    {
        if (_tail == _items.Length) MakeRoom();
        _items[_tail++] = new Change(revision, history);
    }

    /// <summary>Forgets the changes after the first <paramref name="count"/> (an aborted txn's).</summary>
    public void TruncateTo(int count)
    {
        int newTail = _head + count;
        Array.Clear(_items, newTail, _tail - newTail);
        _tail = newTail;
    }

    /// <summary>Drops changes below <paramref name="revision"/> (compaction).</summary>
    public void TrimBelow(long revision)
    {
        int keep = _head + FirstAtOrAfter(revision);
        Array.Clear(_items, _head, keep - _head);
        _head = keep;
    }

    /// <summary>Index of the first change with revision ≥ <paramref name="revision"/>, or <see cref="Count"/>.</summary>
    public int FirstAtOrAfter(long revision)
    {
        int lo = _head, hi = _tail;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_items[mid].Revision < revision) lo = mid + 1;
            else hi = mid;
        }
        return lo - _head;
    }

    // Slides the live part down when most of the array is trimmed space, else doubles it.
    private void MakeRoom()
    {
        int live = _tail - _head;
        if (_head > 0 && live <= _items.Length / 2)
        {
            Array.Copy(_items, _head, _items, 0, live);
            Array.Clear(_items, live, _tail - live);
        }
        else
        {
            var bigger = new Change[_items.Length * 2];
            Array.Copy(_items, _head, bigger, 0, live);
            _items = bigger;
        }
        _head = 0;
        _tail = live;
    }
}
