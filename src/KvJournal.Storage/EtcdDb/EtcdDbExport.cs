using System.Buffers.Binary;
using Google.Protobuf;
using KvJournal.Protos.Snapshot;
using KvJournal.Storage.Bbolt;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Snapshot;

namespace KvJournal.Storage.EtcdDb;

/// <summary>
/// A KvJournal state written as etcd 3.5 writes its database (a bbolt file with etcd's buckets),
/// so `etcdutl snapshot status` reads it and `etcdutl snapshot restore` makes a data dir etcd
/// starts on: every retained version (tombstones included) at its revision, the compaction
/// revision, leases, alarms, and auth with its users' password hashes. The inverse of
/// <see cref="EtcdDbImport"/>. Members are left out: etcdutl restore writes the new cluster's own.
/// </summary>
public static class EtcdDbExport
{
    /// <summary>What was written, for the caller's log.</summary>
    public readonly record struct Summary(long Revision, long CompactRevision, int Versions, int Leases, int Users, int UsersWithoutBcrypt);

    /// <summary>The cluster version etcd 3.5 keeps in its "cluster" bucket.</summary>
    private const string ClusterVersion = "3.5.0";

    /// <summary>Writes <paramref name="view"/> to <paramref name="output"/> (seekable), and tells what it wrote.</summary>
    public static Summary Write(StateSnapshot.View view, Stream output)
    {
        var header = view.Header;
        var writer = new BboltWriter(output);
        var alarms = new List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)>();
        var auth = new AuthState();
        foreach (var message in view.Small)
        {
            if (message is not StateRecord record) continue;
            if (record.Alarm is { } alarm) alarms.Add((alarm.ToByteArray(), Array.Empty<byte>()));
            else if (record.Auth is { } state) auth = state;
        }
        writer.AddBucket("alarm", Sorted(alarms));

        writer.AddBucket("auth", [(Utf8("authEnabled"), new[] { auth.Enabled ? (byte)1 : (byte)0 }), (Utf8("authRevision"), BigEndian(auth.Revision))]);
        writer.AddBucket("authRoles", Sorted(auth.Roles.Select(r => (Key: r.Name.Memory, Value: (ReadOnlyMemory<byte>)r.ToByteArray()))));
        writer.AddBucket("authUsers", Sorted(auth.Users.Select(u => (Key: u.Name.Memory, Value: (ReadOnlyMemory<byte>)u.ToByteArray()))));
        writer.AddBucket("cluster", [(Utf8("clusterVersion"), Utf8(ClusterVersion))]);

        var versions = RetainedVersions(view);
        writer.AddBucket("key", KeyEntries(versions));

        var leases = new List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)>(view.Leases.Count);
        foreach (var lease in view.Leases)
            leases.Add((BigEndian((ulong)lease.Id), new Leasepb.Lease { ID = lease.Id, TTL = lease.TtlSeconds }.ToByteArray()));
        writer.AddBucket("lease", Sorted(leases));
        writer.AddBucket("members", []);
        writer.AddBucket("members_removed", []);

        // etcdutl restore replaces the consistent index and term with its new cluster's.
        var meta = new List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)> { (Utf8("consistent_index"), BigEndian((ulong)Math.Max(0, header.JournalPosition + 1))) };
        if (header.CompactRevision > 0)
        {
            meta.Add((Utf8("finishedCompactRev"), RevisionKey(header.CompactRevision, 0, tombstone: false)));
            meta.Add((Utf8("scheduledCompactRev"), RevisionKey(header.CompactRevision, 0, tombstone: false)));
        }
        meta.Add((Utf8("term"), BigEndian(1)));
        writer.AddBucket("meta", Sorted(meta));
        writer.Finish();

        int withoutBcrypt = 0;
        foreach (var user in auth.Users)
        {
            if (user.Options?.NoPassword != true && !user.Password.Span.StartsWith("$2"u8)) withoutBcrypt++;
        }
        return new Summary(header.Revision, header.CompactRevision, versions.Count, leases.Count, auth.Users.Count, withoutBcrypt);
    }

    private readonly record struct Retained(long Revision, int Sub, ByteString Key, KeyVersion Version);

    // Every version a read at or above the compaction revision can see, in etcd's key order:
    // by revision, then by the order of the writes within it (its sub-revision). The change log
    // holds that order for the revisions above the compaction; below it, key order stands in.
    private static List<Retained> RetainedVersions(StateSnapshot.View view)
    {
        long compacted = view.Header.CompactRevision;
        var all = new List<Retained>();
        foreach (var (key, history) in view.Keys)
        {
            var span = history.AsSpan(KeyHistory.RetainedFrom(history, compacted));
            foreach (ref readonly var version in span) all.Add(new Retained(version.ModRevision, 0, key, version));
        }
        all.Sort((a, b) => a.Revision != b.Revision ? a.Revision.CompareTo(b.Revision) : KeyBytes.Compare(a.Key, b.Key));

        var changes = view.Changes;
        for (int start = 0; start < all.Count;)
        {
            int end = start + 1;
            while (end < all.Count && all[end].Revision == all[start].Revision) end++;
            if (end - start > 1) OrderAsWritten(all, start, end, changes);
            for (int i = start; i < end; i++) all[i] = all[i] with { Sub = i - start };
            start = end;
        }
        return all;
    }

    // Sorts all[start..end) (one revision) by the position of each key in that revision's changes.
    private static void OrderAsWritten(List<Retained> all, int start, int end, (long Revision, ByteString Key)[] changes)
    {
        long revision = all[start].Revision;
        int lo = 0, hi = changes.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (changes[mid].Revision < revision) lo = mid + 1;
            else hi = mid;
        }
        if (lo == changes.Length || changes[lo].Revision != revision) return; // compacted away: key order
        int Rank(ByteString key)
        {
            for (int i = lo; i < changes.Length && changes[i].Revision == revision; i++)
            {
                if (changes[i].Key.Equals(key)) return i;
            }
            return int.MaxValue;
        }
        var run = all.GetRange(start, end - start);
        run.Sort((a, b) => Rank(a.Key).CompareTo(Rank(b.Key)));
        for (int i = 0; i < run.Count; i++) all[start + i] = run[i];
    }

    // etcd's key bucket: the revision (main, '_', sub; 't' after a delete) to the KeyValue written
    // there; a delete writes a KeyValue holding only the key.
    private static IEnumerable<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)> KeyEntries(List<Retained> versions)
    {
        foreach (var r in versions)
        {
            var v = r.Version;
            var kv = v.IsTombstone
                ? new Mvccpb.KeyValue { Key = r.Key }
                : new Mvccpb.KeyValue { Key = r.Key, CreateRevision = v.CreateRevision, ModRevision = v.ModRevision, Version = v.Version, Value = v.Value, Lease = v.Lease };
            yield return (RevisionKey(r.Revision, r.Sub, v.IsTombstone), kv.ToByteArray());
        }
    }

    /// <summary>etcd's revision bytes: main (8, big-endian), '_', sub (8, big-endian), and a 't' marking a tombstone.</summary>
    internal static byte[] RevisionKey(long main, long sub, bool tombstone)
    {
        var bytes = new byte[tombstone ? 18 : 17];
        BinaryPrimitives.WriteInt64BigEndian(bytes, main);
        bytes[8] = (byte)'_';
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(9), sub);
        if (tombstone) bytes[17] = (byte)'t';
        return bytes;
    }

    private static List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)> Sorted(IEnumerable<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)> entries)
    {
        var list = new List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)>();
        foreach (var e in entries) list.Add((e.Key, e.Value));
        list.Sort((a, b) => a.Item1.Span.SequenceCompareTo(b.Item1.Span));
        return list;
    }

    private static byte[] Utf8(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    private static byte[] BigEndian(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        return bytes;
    }
}
