using System.Security.Cryptography;
using Google.Protobuf;
using KvJournal.Member.Shards;
using KvJournal.Protos.Snapshot;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Member.Snapshots;

/// <summary>
/// Writes the keyspace as of one revision in KvJournal's snapshot format (protos/kvjournal/snapshot.proto).
/// Keys are read in pages under the store's read lock, each page at the snapshot's revision, so
/// writes continue between pages; a compaction past that revision meanwhile fails the snapshot.
/// </summary>
public static class SnapshotWriter
{
    public static ReadOnlySpan<byte> Magic => "KVJSNAP1"u8;
    private const int PageKeys = 1000;
    private const int Alignment = 512;

    /// <summary>Writes the snapshot to <paramref name="output"/> and returns the revision it captures.</summary>
    public static async Task<long> WriteAsync(Shard shard, Stream output, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long written = 0;
        async Task Write(ReadOnlyMemory<byte> bytes)
        {
            sha.AppendData(bytes.Span);
            written += bytes.Length;
            await output.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        async Task Record(SnapshotRecord record) => await Write(Delimited(record)).ConfigureAwait(false);

        await Write(Magic.ToArray()).ConfigureAwait(false);
        var (header, leases) = shard.Read(txn => (
            new SnapshotHeader { ClusterId = shard.ClusterId, Revision = txn.ReadRevision, CompactRevision = txn.CompactRevision },
            shard.Leases.All.Select(l => new SnapshotLease { Id = l.Id, TtlSeconds = l.TtlSeconds, ExpiresAtUnixMs = l.ExpiresAtUnixMs }).ToList()));
        await Record(new SnapshotRecord { Header = header }).ConfigureAwait(false);
        foreach (var lease in leases) await Record(new SnapshotRecord { Lease = lease }).ConfigureAwait(false);

        var from = ByteString.CopyFrom(0);
        var page = new List<KeyValue>(PageKeys);
        while (true)
        {
            page.Clear();
            var status = shard.Read(txn => txn.Page(KeyRange.FromRequest(from, ByteString.CopyFrom(0)), header.Revision, PageKeys, page));
            if (status != StoreStatus.Ok) throw new InvalidOperationException($"snapshot at revision {header.Revision} failed: {status}");
            foreach (var kv in page) await Record(new SnapshotRecord { Kv = kv }).ConfigureAwait(false);
            if (page.Count < PageKeys) break;
            from = ByteString.CopyFrom([.. page[^1].Key.Span, 0]); // the next key after the last one
        }
        await Write(new byte[] { 0 }).ConfigureAwait(false); // zero length: the end
        int pad = (int)((Alignment - written % Alignment) % Alignment);
        if (pad > 0) await Write(new byte[pad]).ConfigureAwait(false);
        await output.WriteAsync(sha.GetHashAndReset(), cancellationToken).ConfigureAwait(false);
        return header.Revision;
    }

    private static byte[] Delimited(SnapshotRecord message)
    {
        int size = message.CalculateSize();
        var bytes = new byte[CodedOutputStream.ComputeLengthSize(size) + size];
        var stream = new CodedOutputStream(bytes);
        stream.WriteLength(size);
        message.WriteTo(stream);
        stream.Flush();
        return bytes;
    }
}
