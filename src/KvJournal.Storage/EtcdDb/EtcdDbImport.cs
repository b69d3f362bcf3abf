using System.Buffers.Binary;
using System.Security.Cryptography;
using Google.Protobuf;
using KvJournal.Protos.Snapshot;
using KvJournal.Storage.Bbolt;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Snapshot;

namespace KvJournal.Storage.EtcdDb;

/// <summary>
/// An etcd database (what `etcdctl snapshot save` writes) turned into a KvJournal state snapshot
/// that covers no journal entry yet: every retained revision of every key (tombstones included),
/// the change log above the compaction point (so watches replay from a past revision), the
/// compaction revision, leases with a fresh deadline of their TTL (as etcd gives them on restore),
/// and auth (enabled, revision, users with their bcrypt hashes, roles). A member that starts from
/// it serves the same keys at the same revisions, and its next write gets etcd's next revision.
/// </summary>
public static class EtcdDbImport
{
    private const int RevisionBytes = 17; // main (8, big-endian), '_', sub (8); a tombstone adds 't'

    /// <summary>What was imported, for the operator.</summary>
    public readonly record struct Summary(long Revision, long CompactRevision, int Keys, int Versions, int Leases, int Users, int Roles, bool AuthEnabled);

    /// <summary>
    /// Reads <paramref name="db"/> and writes the state snapshot to <paramref name="output"/>. With
    /// <paramref name="mirrorOf"/> the state is a mirror of that etcd cluster: it takes no writes
    /// but the source's until its cut-over.
    /// </summary>
    public static Summary Write(BboltFile db, Stream output, long nowUnixMs, string? mirrorOf = null)
    {
        var keyBucket = db.Root.Bucket("key") ?? throw new BboltFormatException("not an etcd database: it has no \"key\" bucket");
        long compacted = Math.Max(MetaRevision(db, "finishedCompactRev"), MetaRevision(db, "scheduledCompactRev"));

        // The key bucket is in revision order (main, then sub): that is the order of the change log.
        var histories = new Dictionary<ByteString, List<KeyVersion>>();
        var changes = new List<(long Revision, ByteString Key)>();
        long last = 0;
        int versions = 0;
        foreach (var entry in keyBucket.Entries())
        {
            var revision = entry.Key.Span;
            if (revision.Length is not (RevisionBytes or RevisionBytes + 1) || revision[8] != (byte)'_')
                throw new BboltFormatException($"bucket key: {revision.Length} bytes is not a revision");
            long main = BinaryPrimitives.ReadInt64BigEndian(revision);
            bool tombstone = revision.Length == RevisionBytes + 1 && revision[RevisionBytes] == (byte)'t';
            var kv = Parse(Mvccpb.KeyValue.Parser, entry, "key");
            if (!histories.TryGetValue(kv.Key, out var history)) histories.Add(kv.Key, history = []);
            history.Add(tombstone ? new KeyVersion(main, 0, 0, 0, ByteString.Empty) : new KeyVersion(main, kv.CreateRevision, kv.Version, kv.Lease, kv.Value));
            if (main > compacted) changes.Add((main, kv.Key));
            last = main;
            versions++;
        }

        var keys = new List<(ByteString Key, KeyVersion[] Versions)>(histories.Count);
        foreach (var (key, history) in histories) keys.Add((key, history.ToArray()));
        keys.Sort((a, b) => KeyBytes.Compare(a.Key, b.Key));

        var leases = new List<SnapshotLease>();
        foreach (var entry in db.Root.Bucket("lease")?.Entries() ?? [])
        {
            var lease = Parse(Leasepb.Lease.Parser, entry, "lease");
            leases.Add(new SnapshotLease { Id = lease.ID, TtlSeconds = lease.TTL, ExpiresAtUnixMs = nowUnixMs + lease.TTL * 1000 });
        }

        var auth = Auth(db);
        var header = new StateHeader
        {
            ClusterId = NewClusterId(),
            // A delete compacted away leaves no key at the head revision; the compaction revision still
            // counts. An empty keyspace is at revision 1, as a new etcd (and KvJournal) is.
            Revision = Math.Max(1, Math.Max(last, compacted)),
            CompactRevision = compacted,
            JournalPosition = ImportedPosition,
        };
        List<IMessage> small = [new StateRecord { Auth = auth }];
        if (mirrorOf is not null) small.Add(new StateRecord { Mirror = new MirrorState { Source = mirrorOf } });
        StateSnapshot.Write(output, new StateSnapshot.View(header, keys, [.. changes], leases, small));
        return new Summary(header.Revision, compacted, keys.Count, versions, leases.Count, auth.Users.Count, auth.Roles.Count, auth.Enabled);
    }

    /// <summary>The journal position an imported state covers: none (it is the state before the first entry).</summary>
    public const long ImportedPosition = -1;

    // etcd's auth buckets: "auth" holds authEnabled (one byte) and authRevision (8 bytes, big-endian).
    private static AuthState Auth(BboltFile db)
    {
        var state = new AuthState();
        foreach (var entry in db.Root.Bucket("auth")?.Entries() ?? [])
        {
            string name = System.Text.Encoding.UTF8.GetString(entry.Key.Span);
            if (name == "authEnabled") state.Enabled = entry.Value.Length == 1 && entry.Value.Span[0] == 1;
            else if (name == "authRevision" && entry.Value.Length == 8) state.Revision = BinaryPrimitives.ReadUInt64BigEndian(entry.Value.Span);
        }
        foreach (var entry in db.Root.Bucket("authUsers")?.Entries() ?? []) state.Users.Add(Parse(Authpb.User.Parser, entry, "authUsers"));
        foreach (var entry in db.Root.Bucket("authRoles")?.Entries() ?? []) state.Roles.Add(Parse(Authpb.Role.Parser, entry, "authRoles"));
        return state;
    }

    private static T Parse<T>(MessageParser<T> parser, BboltBucket.Entry entry, string bucket) where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(entry.Value.Span);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new BboltFormatException($"bucket {bucket}: the value of key {Convert.ToHexString(entry.Key.Span)} does not parse: {ex.Message}");
        }
    }

    // A revision etcd keeps in its meta bucket (revision bytes), or 0.
    private static long MetaRevision(BboltFile db, string name)
    {
        var meta = db.Root.Bucket("meta");
        if (meta is null) return 0;
        byte[] wanted = System.Text.Encoding.UTF8.GetBytes(name);
        foreach (var entry in meta.Entries())
        {
            if (entry.Key.Span.SequenceEqual(wanted) && entry.Value.Length >= 8) return BinaryPrimitives.ReadInt64BigEndian(entry.Value.Span);
        }
        return 0;
    }

    private static ulong NewClusterId()
    {
        ulong id;
        do id = BinaryPrimitives.ReadUInt64LittleEndian(RandomNumberGenerator.GetBytes(8)); while (id == 0);
        return id;
    }
}
