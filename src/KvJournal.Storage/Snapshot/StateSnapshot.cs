using System.Security.Cryptography;
using Google.Protobuf;
using KvJournal.Protos.Snapshot;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Snapshot;

/// <summary>
/// A member's whole applied state at one journal position (protos/kvjournal/snapshot.proto,
/// StateRecord): every retained version of every key, the change log watchers replay, leases,
/// members, alarms and the exactly-once window. Restoring it and applying the journal after its
/// position gives exactly the state of a member that applied the journal from the start, so
/// revisions, HashKV and watch history agree across members.
/// </summary>
public static class StateSnapshot
{
    private static ReadOnlySpan<byte> Magic => "KVJSTAT1"u8;
    private const int BatchSize = 4096;
    private const int HashBytes = 32;

    /// <summary>
    /// The state at one journal position, copied out of the live structures (which change in
    /// place) so it can be written while the applier goes on: references to the immutable keys and
    /// values, copies of the version arrays and of everything small.
    /// </summary>
    public sealed class View
    {
        internal View(StateHeader header, List<(ByteString Key, KeyVersion[] Versions)> keys, (long Revision, ByteString Key)[] changes,
            List<SnapshotLease> leases, List<IMessage> small)
        {
            Header = header;
            Keys = keys;
            Changes = changes;
            Leases = leases;
            Small = small;
        }

        internal StateHeader Header { get; }
        internal List<(ByteString Key, KeyVersion[] Versions)> Keys { get; }
        internal (long Revision, ByteString Key)[] Changes { get; }
        internal List<SnapshotLease> Leases { get; }
        // Members, alarms, the exactly-once window and auth: records written as they are.
        internal List<IMessage> Small { get; }

        /// <summary>The journal position the state covers.</summary>
        public long Position => Header.JournalPosition;

        public int KeyCount => Keys.Count;
    }

    /// <summary>Copies the state out; the caller holds the store's read lock (a memory copy, no I/O).</summary>
    public static View Capture(MvccStore store, Lessor lessor, KvApplier applier)
    {
        var keys = new List<(ByteString, KeyVersion[])>(store.KeyCount);
        foreach (var h in store.Histories) keys.Add((h.Key, h.Versions.ToArray()));
        var log = store.Changes;
        var changes = new (long, ByteString)[log.Count];
        for (int i = 0; i < changes.Length; i++) changes[i] = (log[i].Revision, log[i].History.Key);
        var leases = new List<SnapshotLease>();
        foreach (var l in lessor.All) leases.Add(new SnapshotLease { Id = l.Id, TtlSeconds = l.TtlSeconds, ExpiresAtUnixMs = l.ExpiresAtUnixMs });
        var small = new List<IMessage>();
        foreach (var m in applier.Members.Values) small.Add(new StateRecord { Member = m.Clone() });
        foreach (var alarm in applier.Alarms) small.Add(new StateRecord { Alarm = alarm.Clone() });
        var applied = new AppliedRequestBatch();
        foreach (var (member, request) in applier.AppliedRequests.InOrder)
        {
            applied.Members.Add(member);
            applied.Requests.Add(request);
            if (applied.Members.Count == BatchSize)
            {
                small.Add(new StateRecord { Applied = applied });
                applied = new AppliedRequestBatch();
            }
        }
        if (applied.Members.Count > 0) small.Add(new StateRecord { Applied = applied });
        small.Add(new StateRecord { Auth = applier.Auth.ToSnapshot() });
        if (applier.MirrorSource is { } source) small.Add(new StateRecord { Mirror = new MirrorState { Source = source } });
        var (compactingTo, compactFrom) = store.Compacting;
        var header = new StateHeader
        {
            ClusterId = applier.ClusterId,
            Revision = store.CurrentRevision,
            CompactRevision = store.CompactRevision,
            JournalPosition = applier.Position,
            CompactingTo = compactingTo,
            CompactFrom = compactFrom,
        };
        return new View(header, keys, changes, leases, small);
    }

    /// <summary>Writes a captured state; no lock is needed, so writers never wait for the encoding or the disk.</summary>
    public static void Write(Stream output, View view)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var hashed = new HashingWriteStream(output, sha))
        {
            hashed.Write(Magic);
            var records = new CodedOutputStream(hashed, leaveOpen: true);
            void Record(IMessage r) => records.WriteMessage(r);

            Record(new StateRecord { Header = view.Header });
            foreach (var (k, versions) in view.Keys)
            {
                var key = new StoredKey { Key = k };
                foreach (ref readonly var v in versions.AsSpan())
                    key.Versions.Add(new StoredVersion { ModRevision = v.ModRevision, CreateRevision = v.CreateRevision, Version = v.Version, Lease = v.Lease, Value = v.Value });
                Record(new StateRecord { Key = key });
            }
            for (int i = 0; i < view.Changes.Length; i += BatchSize)
            {
                var batch = new ChangeBatch();
                for (int j = i; j < Math.Min(view.Changes.Length, i + BatchSize); j++)
                {
                    batch.Revisions.Add(view.Changes[j].Revision);
                    batch.Keys.Add(view.Changes[j].Key);
                }
                Record(new StateRecord { Changes = batch });
            }
            foreach (var l in view.Leases) Record(new StateRecord { Lease = l });
            foreach (var r in view.Small) Record(r);
            records.WriteLength(0); // the end
            records.Flush();
        }
        output.Write(sha.GetHashAndReset());
    }

    /// <summary>
    /// Loads the snapshot file at <paramref name="path"/> into a fresh store, lessor and applier and
    /// returns the journal position it covers. Throws <see cref="InvalidDataException"/> when the
    /// file is not a whole, intact state snapshot.
    /// </summary>
    /// <summary>
    /// Loads a snapshot that <see cref="Verify"/> accepted into a fresh store, lessor and applier;
    /// returns the journal position it covers.
    /// </summary>
    public static long Read(string path, MvccStore store, Lessor lessor, KvApplier applier)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        Span<byte> magic = stackalloc byte[8];
        file.ReadExactly(magic);
        var records = new CodedInputStream(file, leaveOpen: true);
        StateHeader? header = null;
        long lastChange = 0;
        while (true)
        {
            var r = new StateRecord();
            records.ReadMessage(r);
            switch (r.BodyCase)
            {
                case StateRecord.BodyOneofCase.None:
                    if (header is null) throw new InvalidDataException("state snapshot without a header");
                    store.RestoreRevisions(header.Revision, header.CompactRevision, header.CompactingTo, header.CompactFrom);
                    applier.Restore(header.ClusterId, header.JournalPosition);
                    AttachLeases(store, lessor);
                    return header.JournalPosition;
                case StateRecord.BodyOneofCase.Header:
                    header = r.Header;
                    break;
                case StateRecord.BodyOneofCase.Key:
                    store.RestoreKey(r.Key.Key, r.Key.Versions.Select(v => new KeyVersion(v.ModRevision, v.CreateRevision, v.Version, v.Lease, v.Value)));
                    break;
                case StateRecord.BodyOneofCase.Changes:
                    for (int i = 0; i < r.Changes.Revisions.Count; i++)
                    {
                        if (r.Changes.Revisions[i] < lastChange) throw new InvalidDataException("state snapshot changes out of revision order");
                        lastChange = r.Changes.Revisions[i];
                        store.RestoreChange(lastChange, r.Changes.Keys[i]);
                    }
                    break;
                case StateRecord.BodyOneofCase.Lease:
                    lessor.Restore(r.Lease.Id, r.Lease.TtlSeconds, r.Lease.ExpiresAtUnixMs);
                    break;
                case StateRecord.BodyOneofCase.Member:
                    applier.RestoreMember(r.Member);
                    break;
                case StateRecord.BodyOneofCase.Alarm:
                    applier.RestoreAlarm(r.Alarm);
                    break;
                case StateRecord.BodyOneofCase.Auth:
                    applier.Auth.Restore(r.Auth);
                    break;
                case StateRecord.BodyOneofCase.Mirror:
                    applier.MirrorSource = r.Mirror.Source;
                    break;
                case StateRecord.BodyOneofCase.Applied:
                    for (int i = 0; i < r.Applied.Members.Count; i++) applier.AppliedRequests.TryAdd(r.Applied.Members[i], r.Applied.Requests[i]);
                    break;
            }
        }
    }

    // A lease's key set is the live keys whose latest version carries it.
    private static void AttachLeases(MvccStore store, Lessor lessor)
    {
        foreach (var h in store.Histories)
        {
            ref readonly var latest = ref h.Latest;
            if (!latest.IsTombstone && latest.Lease != 0) lessor.Moved(h.Key, 0, latest.Lease);
        }
    }

    // The magic at the start and the SHA-256 of everything before the last 32 bytes at the end.
    /// <summary>Checks the magic and the SHA-256 trailer; throws <see cref="InvalidDataException"/> for a damaged or truncated file.</summary>
    public static void Verify(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        if (file.Length < Magic.Length + 1 + HashBytes) throw new InvalidDataException("state snapshot is truncated");
        Span<byte> magic = stackalloc byte[8];
        file.ReadExactly(magic);
        if (!magic.SequenceEqual(Magic)) throw new InvalidDataException("not a KvJournal state snapshot");
        file.Position = 0;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        long left = file.Length - HashBytes;
        while (left > 0)
        {
            int n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) throw new InvalidDataException("state snapshot is truncated");
            sha.AppendData(buffer, 0, n);
            left -= n;
        }
        Span<byte> trailer = stackalloc byte[HashBytes];
        file.ReadExactly(trailer);
        if (!trailer.SequenceEqual(sha.GetHashAndReset())) throw new InvalidDataException("state snapshot checksum mismatch");
    }

    /// <summary>Passes writes through to the output and into the hash.</summary>
    private sealed class HashingWriteStream(Stream output, IncrementalHash sha) : Stream
    {
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            sha.AppendData(buffer);
            output.Write(buffer);
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Flush() => output.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
