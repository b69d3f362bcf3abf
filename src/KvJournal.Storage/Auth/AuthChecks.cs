using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Lease;

namespace KvJournal.Storage.Auth;

/// <summary>
/// Which permissions each request needs, as etcd's auth applier asks for them
/// (server/etcdserver/apply/auth.go): write on what it changes, read on what it returns or compares,
/// write on every key of a lease it attaches to or revokes. Callers hold the store's lock.
/// </summary>
public static class AuthChecks
{
    public static EtcdError Range(AuthStore auth, string user, RangeRequest r) => auth.CheckRead(user, r.Key, r.RangeEnd);

    public static EtcdError Put(AuthStore auth, Lessor? leases, string user, PutRequest r)
    {
        var e = auth.CheckWrite(user, r.Key, ByteString.Empty);
        if (e == EtcdError.None) e = LeaseKeys(auth, leases, user, r.Lease, write: true);
        if (e == EtcdError.None && r.PrevKv) e = auth.CheckRead(user, r.Key, ByteString.Empty);
        return e;
    }

    public static EtcdError DeleteRange(AuthStore auth, string user, DeleteRangeRequest r)
    {
        var e = auth.CheckWrite(user, r.Key, r.RangeEnd);
        if (e == EtcdError.None && r.PrevKv) e = auth.CheckRead(user, r.Key, r.RangeEnd);
        return e;
    }

    public static EtcdError Txn(AuthStore auth, Lessor? leases, string user, TxnRequest r)
    {
        foreach (var c in r.Compare)
        {
            var e = auth.CheckRead(user, c.Key, c.RangeEnd);
            if (e != EtcdError.None) return e;
        }
        var s = Ops(auth, leases, user, r.Success);
        return s != EtcdError.None ? s : Ops(auth, leases, user, r.Failure);
    }

    /// <summary>
    /// For a lease a request attaches keys to, revokes or renews (write), or whose keys it lists
    /// (read): the permission on every key attached now. Admins need none.
    /// </summary>
    public static EtcdError LeaseKeys(AuthStore auth, Lessor? leases, string user, long lease, bool write)
    {
        if (!auth.Enabled || lease == 0 || leases?.Get(lease) is not { } entry) return EtcdError.None;
        if (auth.CheckAdmin(user) == EtcdError.None) return EtcdError.None;
        foreach (var key in entry.AttachedKeys)
        {
            var e = write ? auth.CheckWrite(user, key, ByteString.Empty) : auth.CheckRead(user, key, ByteString.Empty);
            if (e != EtcdError.None) return e;
        }
        return EtcdError.None;
    }

    private static EtcdError Ops(AuthStore auth, Lessor? leases, string user, Google.Protobuf.Collections.RepeatedField<RequestOp> ops)
    {
        foreach (var op in ops)
        {
            var e = op.RequestCase switch
            {
                RequestOp.RequestOneofCase.RequestRange => Range(auth, user, op.RequestRange),
                RequestOp.RequestOneofCase.RequestPut => Put(auth, leases, user, op.RequestPut),
                RequestOp.RequestOneofCase.RequestDeleteRange => DeleteRange(auth, user, op.RequestDeleteRange),
                RequestOp.RequestOneofCase.RequestTxn => Txn(auth, leases, user, op.RequestTxn),
                _ => EtcdError.None,
            };
            if (e != EtcdError.None) return e;
        }
        return EtcdError.None;
    }
}
