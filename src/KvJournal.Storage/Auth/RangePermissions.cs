using Authpb;
using Google.Protobuf;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Auth;

/// <summary>
/// One user's key permissions of one kind (read or write) over all its roles, merged into
/// disjoint, sorted intervals: a request is allowed when a single interval covers its whole range
/// (etcd's rangePermCache, which asks its interval tree whether the union covers the range).
/// </summary>
internal sealed class RangePermissions
{
    // [Start, End) with End null = to the end of the keyspace.
    private readonly List<(byte[] Start, byte[]? End)> _intervals = [];

    public static (RangePermissions Read, RangePermissions Write) Merge(IEnumerable<Permission> permissions)
    {
        var read = new List<(byte[], byte[]?)>();
        var write = new List<(byte[], byte[]?)>();
        foreach (var p in permissions)
        {
            var interval = ToInterval(p.Key, p.RangeEnd);
            if (p.PermType is Permission.Types.Type.Read or Permission.Types.Type.Readwrite) read.Add(interval);
            if (p.PermType is Permission.Types.Type.Write or Permission.Types.Type.Readwrite) write.Add(interval);
        }
        return (Build(read), Build(write));
    }

    /// <summary>Whether the permissions cover a request's key and range_end (etcd's encoding: empty = one key, "\0" = to the end).</summary>
    public bool Covers(ByteString key, ByteString rangeEnd)
    {
        // Compared in place: a check runs on every request once auth is on.
        ReadOnlySpan<byte> start = key.Span;
        // The last interval starting at or before the request's start is the only one that can cover it.
        int lo = 0, hi = _intervals.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (KeyBytes.Compare(_intervals[mid].Start, start) <= 0)
            {
                found = mid;
                lo = mid + 1;
            }
            else hi = mid - 1;
        }
        if (found < 0) return false;
        var have = _intervals[found].End;
        if (have is null) return true;
        // One key [k, k + "\0") fits below `have` exactly when k < have.
        if (rangeEnd.Length == 0) return KeyBytes.Compare(start, have) < 0;
        if (rangeEnd.Length == 1 && rangeEnd[0] == 0) return false;
        ReadOnlySpan<byte> end = rangeEnd.Span;
        // An empty request range [k, e ≤ k) asks for nothing past k: it needs k itself.
        if (KeyBytes.Compare(end, start) <= 0) return KeyBytes.Compare(start, have) < 0;
        return KeyBytes.Compare(end, have) <= 0;
    }

    private static (byte[] Start, byte[]? End) ToInterval(ByteString key, ByteString rangeEnd)
    {
        byte[] start = key.ToByteArray();
        if (rangeEnd.Length == 0) return (start, [.. start, 0]); // one key: [k, k + "\0")
        if (rangeEnd.Length == 1 && rangeEnd[0] == 0) return (start, null);
        return (start, rangeEnd.ToByteArray());
    }

    private static RangePermissions Build(List<(byte[] Start, byte[]? End)> intervals)
    {
        intervals.Sort((a, b) => KeyBytes.Compare(a.Start, b.Start));
        var merged = new RangePermissions();
        foreach (var (start, end) in intervals)
        {
            if (end is not null && KeyBytes.Compare(end, start) <= 0) continue; // empty: covers nothing
            if (merged._intervals.Count > 0)
            {
                var (lastStart, lastEnd) = merged._intervals[^1];
                // Overlapping or touching intervals cover one contiguous span.
                if (lastEnd is null || KeyBytes.Compare(start, lastEnd) <= 0)
                {
                    if (lastEnd is not null && (end is null || KeyBytes.Compare(end, lastEnd) > 0))
                        merged._intervals[^1] = (lastStart, end);
                    continue;
                }
            }
            merged._intervals.Add((start, end));
        }
        return merged;
    }
}
