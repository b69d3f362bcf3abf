using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Lease;

/// <summary>
/// Applies the lease entries (grant, revoke, renew, expire) to the lessor and the store. The
/// caller holds the store's write lock; results are deterministic functions of the entries.
/// </summary>
public sealed class LeaseExecutor(MvccStore store, Lessor lessor)
{
    public ApplyResult Grant(LeaseGrant g)
    {
        var error = lessor.Grant(g.Id, g.TtlSeconds, g.AtUnixMs, out var lease);
        if (error != EtcdError.None) return ApplyResult.Fail(error);
        return ApplyResult.Ok(new LeaseGrantResponse { Header = Header(), ID = lease!.Id, TTL = lease.TtlSeconds });
    }

    public ApplyResult Revoke(LeaseRevoke r)
    {
        var lease = lessor.Get(r.Id);
        if (lease is null) return ApplyResult.Fail(EtcdError.LeaseNotFound);
        RevokeWithKeys(lease);
        return ApplyResult.Ok(new LeaseRevokeResponse { Header = Header() });
    }

    /// <summary>Renews each lease; its answer is the granted TTL, or 0 for a lease that is gone or past its deadline (as etcd).</summary>
    public ApplyResult Renew(LeaseRenew r)
    {
        var result = new LeaseRenewResult();
        foreach (long id in r.Ids) result.Ttls.Add(lessor.Renew(id, r.AtUnixMs)?.TtlSeconds ?? 0);
        return ApplyResult.Ok(result);
    }

    /// <summary>Revokes the lease if it is still past its deadline at the entry's time; otherwise nothing happens.</summary>
    public ApplyResult Expire(LeaseExpire e)
    {
        var lease = lessor.Get(e.Id);
        if (lease is not null && lease.ExpiresAtUnixMs <= e.AtUnixMs) RevokeWithKeys(lease);
        return ApplyResult.Ok(new LeaseRevokeResponse { Header = Header() });
    }

    // All attached keys go in one revision, in key order (etcd sorts them too), then the lease.
    private void RevokeWithKeys(LeaseEntry lease)
    {
        if (lease.Keys.Count > 0)
        {
            var keys = lease.Keys.ToArray();
            Array.Sort(keys, KeyBytes.Compare);
            var txn = store.Begin(writable: true);
            foreach (var key in keys) txn.DeleteRange(KeyRange.FromRequest(key, ByteString.Empty));
            txn.End();
        }
        lessor.Remove(lease.Id);
    }

    /// <summary>A lease a mirrored key attaches to, granted as the source holds it unless it is here already.</summary>
    public void GrantMirrored(LeaseGrant g)
    {
        if (!lessor.Exists(g.Id)) lessor.Grant(g.Id, g.TtlSeconds, g.AtUnixMs, out _);
    }

    /// <summary>
    /// At a mirror's cut-over the leases become the source's: each listed one with its remaining
    /// time from <paramref name="atUnixMs"/>, granted if missing; any other is dropped (it has no
    /// keys: the keys matched the source's before the cut-over was proposed).
    /// </summary>
    public void TakeOverLeases(IReadOnlyList<MirrorLease> source, long atUnixMs)
    {
        var keep = new HashSet<long>();
        foreach (var l in source)
        {
            keep.Add(l.Id);
            if (!lessor.Exists(l.Id)) lessor.Grant(l.Id, l.GrantedTtl, atUnixMs, out _);
            lessor.Get(l.Id)!.ExpiresAtUnixMs = atUnixMs + Math.Max(l.RemainingTtl, 0) * 1000;
        }
        var drop = new List<LeaseEntry>();
        foreach (var lease in lessor.All)
            if (!keep.Contains(lease.Id)) drop.Add(lease);
        foreach (var lease in drop) RevokeWithKeys(lease);
    }

    private ResponseHeader Header() => new() { Revision = store.CurrentRevision };
}
