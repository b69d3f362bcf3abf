using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Member.Face;

// A mirror of an etcd cluster (kvjournal mirror): what its follower needs from the shard. The
// follower is the only proposer of mirrored revisions; clients reach the cut-over only, as admins.
public sealed partial class ShardServer
{
    /// <summary>The etcd cluster this keyspace mirrors until its cut-over; null when it is not a mirror.</summary>
    public string? MirrorSource => shard.Read(_ => shard.Applier.MirrorSource);

    /// <summary>The newest revision applied here.</summary>
    public long Revision => CurrentRevision();

    /// <summary>The time this member stamps on lease entries (Unix ms).</summary>
    public long NowUnixMs => shard.NowUnixMs();

    /// <summary>Whether lease <paramref name="id"/> is held here.</summary>
    public bool HoldsLease(long id) => shard.Read(_ => shard.Leases.Exists(id));

    /// <summary>Applies source revisions through the journal; returns the revision this keyspace is at after them.</summary>
    public async Task<long> ApplyMirroredAsync(MirrorRevisions revisions, CancellationToken cancellationToken) =>
        (await ProposeAsync<ResponseHeader>("", new JournalEntry { MirrorRevisions = revisions }, cancellationToken).ConfigureAwait(false)).Revision;

    /// <summary>Up to <paramref name="max"/> keys live at <paramref name="revision"/> from <paramref name="from"/> on, in key order.</summary>
    public List<KeyValue> KeysAt(long revision, ByteString from, int max)
    {
        var page = new List<KeyValue>(max);
        var status = shard.Read(txn => txn.Page(KeyRange.FromRequest(from, ByteString.CopyFrom(0)), revision, max, page));
        if (status != StoreStatus.Ok) throw new InvalidOperationException($"the mirror cannot read revision {revision}: {status}");
        return page;
    }

    /// <summary>The cut-over entry, proposed once the follower checked the keys: writes open after it.</summary>
    public async Task<long> CutOverAsync(MirrorCutOver cutOver, CancellationToken cancellationToken) =>
        (await ProposeAsync<ResponseHeader>("", new JournalEntry { MirrorCutOver = cutOver }, cancellationToken).ConfigureAwait(false)).Revision;

    /// <summary>Who may ask for the cut-over: an admin when auth is on (etcd's admin calls).</summary>
    public void CheckMirrorAdmin(CallerIdentity who) => CheckAdmin(UserOf(who));
}
