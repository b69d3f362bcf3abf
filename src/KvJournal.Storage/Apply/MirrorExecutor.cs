using Etcdserverpb;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Apply;

/// <summary>
/// Applies a mirror's entries: each source revision at the source's own number, with the source's
/// create revisions, versions and leases, so the mirror answers as the source did revision for
/// revision; and the cut-over, after which the keyspace is this cluster's own.
/// </summary>
internal sealed class MirrorExecutor(MvccStore store, LeaseExecutor leases)
{
    /// <summary>
    /// Applies the revisions above the current one in order (a copy of one already applied, from a
    /// retried or doubled proposal, is skipped). A change whose previous version (prev_kv) is not the
    /// one held here, or a delete of a key not held, means the mirror no longer matches its source:
    /// that revision and the ones after it are not applied, and the entry fails alike on every member.
    /// </summary>
    public ApplyResult Apply(MirrorRevisions entry)
    {
        foreach (var revision in entry.Revisions)
        {
            if (revision.Revision <= store.CurrentRevision) continue;
            foreach (var grant in revision.Leases) leases.GrantMirrored(grant);
            var txn = store.BeginAt(revision.Revision);
            bool applied = false;
            try
            {
                foreach (var e in revision.Events)
                {
                    var kv = e.Kv;
                    // The source's previous version (prev_kv) must be the one held here, or the copies parted.
                    if (e.PrevKv is { } prev && (txn.Get(kv.Key)?.ModRevision ?? 0) != prev.ModRevision)
                        throw new InvalidDataException($"the source changes {kv.Key.ToStringUtf8()} at revision {revision.Revision} from its version of revision {prev.ModRevision}, which the mirror does not hold");
                    if (e.Type == Event.Types.EventType.Put) txn.PutVersion(kv.Key, kv.Value, kv.Lease, kv.CreateRevision, kv.Version);
                    else if (txn.DeleteRange(KeyRange.FromRequest(kv.Key, Google.Protobuf.ByteString.Empty)) == 0)
                        throw new InvalidDataException($"the source deletes {kv.Key.ToStringUtf8()} at revision {revision.Revision}, which the mirror does not hold");
                }
                applied = true;
            }
            finally
            {
                if (!applied) txn.Abort();
                txn.End();
            }
        }
        return ApplyResult.Ok(new ResponseHeader { Revision = store.CurrentRevision });
    }

    /// <summary>Ends the mirror at the revision it stopped at: leases become the source's, and writes open.</summary>
    public ApplyResult CutOver(MirrorCutOver entry)
    {
        if (entry.Revision != store.CurrentRevision) throw new InvalidDataException($"cut-over at revision {entry.Revision}, but the mirror is at {store.CurrentRevision}");
        leases.TakeOverLeases(entry.Leases, entry.AtUnixMs);
        return ApplyResult.Ok(new ResponseHeader { Revision = store.CurrentRevision });
    }
}
