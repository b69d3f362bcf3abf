using Google.Protobuf;

namespace KvJournal.Storage.Mvcc;

/// <summary>Byte-wise key order, the order etcd keeps keys in (Go's bytes.Compare).</summary>
public static class KeyBytes
{
    public static int Compare(ByteString a, ByteString b) => a.Span.SequenceCompareTo(b.Span);

    public static int Compare(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a.SequenceCompareTo(b);
}

/// <summary>
/// A key range as etcd's API spells it: <c>range_end</c> empty = the single key; <c>range_end</c>
/// = "\0" = every key ≥ key; otherwise [key, range_end). An end at or before key is empty.
/// </summary>
public readonly struct KeyRange : IEquatable<KeyRange>
{
    public ByteString Key { get; }
    /// <summary>Exclusive upper bound; null for a single key or for "to the end of the keyspace".</summary>
    public ByteString? End { get; }
    public bool IsSingleKey { get; }

    private KeyRange(ByteString key, ByteString? end, bool single)
    {
        Key = key;
        End = end;
        IsSingleKey = single;
    }

    /// <summary>The part of this range after <paramref name="key"/> (which is in it): where a paused scan resumes.</summary>
    public KeyRange After(ByteString key) => new(ByteString.CopyFrom([.. key.Span, 0]), End, single: false);

    public bool Contains(ByteString key)
    {
        if (IsSingleKey) return key.Equals(Key);
        if (KeyBytes.Compare(key, Key) < 0) return false;
        return End is null || KeyBytes.Compare(key, End) < 0;
    }

    public bool Equals(KeyRange other) =>
        IsSingleKey == other.IsSingleKey && Key.Equals(other.Key) && Equals(End, other.End);

    public override bool Equals(object? obj) => obj is KeyRange other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Key, End, IsSingleKey);

    public static bool operator ==(KeyRange left, KeyRange right) => left.Equals(right);

    public static bool operator !=(KeyRange left, KeyRange right) => !left.Equals(right);

    public static KeyRange FromRequest(ByteString key, ByteString rangeEnd)
    {
        if (rangeEnd.Length == 0) return new KeyRange(key, null, single: true);
        if (rangeEnd.Length == 1 && rangeEnd[0] == 0) return new KeyRange(key, null, single: false);
        return new KeyRange(key, rangeEnd, single: false);
    }
}
