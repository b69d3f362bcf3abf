using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Apply;

/// <summary>
/// Put, DeleteRange and Txn against a txn view, with etcd's semantics (etcd: server/etcdserver/txn).
/// </summary>
/// <remarks>
/// A Txn is decided before it runs: every compare, nested ones included, is evaluated against the
/// state before the txn (the "txn path"), and the chosen branches are checked (read revisions in
/// range, ignore_value / ignore_lease keys present, leases exist). Only then are the operations
/// executed, so execution cannot fail half-way and a txn never writes partially.
/// </remarks>
public sealed class TxnExecutor(ILeaseLookup leases)
{
    public EtcdError Put(MvccStore.MvccTxn txn, PutRequest p, out PutResponse? response)
    {
        response = null;
        if (p.Lease != 0 && !leases.Exists(p.Lease)) return EtcdError.LeaseNotFound;
        return ExecutePut(txn, p, out response);
    }

    public static DeleteRangeResponse DeleteRange(MvccStore.MvccTxn txn, DeleteRangeRequest d)
    {
        var resp = new DeleteRangeResponse { Header = new ResponseHeader() };
        var range = KeyRange.FromRequest(d.Key, d.RangeEnd);
        if (d.PrevKv)
        {
            var prev = new List<KeyValue>();
            txn.Range(range, 0, 0, countOnly: false, keysOnly: false, prev, out _);
            resp.PrevKvs.Add(prev);
        }
        resp.Deleted = txn.DeleteRange(range);
        resp.Header.Revision = resp.Deleted > 0 || txn.HasChanges ? txn.BeginRevision + 1 : txn.BeginRevision;
        return resp;
    }

    public EtcdError Txn(MvccStore.MvccTxn txn, TxnRequest t, out TxnResponse? response)
    {
        response = null;
        var path = new List<bool>();
        DecidePath(txn, t, path);
        var error = Check(txn, t, path);
        if (error != EtcdError.None) return error;

        var resp = new TxnResponse { Header = new ResponseHeader(), Succeeded = path[0] };
        error = EtcdError.None;
        Execute(txn, t, path, 0, resp, ref error);
        if (error != EtcdError.None)
        {
            // Only reachable when an earlier op of the txn deleted the key a later put with
            // ignore_value / ignore_lease needs (a "\0" range end escapes the duplicate-key check).
            // etcd panics here; KvJournal refuses the whole txn and writes nothing.
            txn.Abort();
            return error;
        }
        resp.Header.Revision = txn.HasChanges ? txn.BeginRevision + 1 : txn.BeginRevision;
        response = resp;
        return EtcdError.None;
    }

    /// <summary>True when neither branch, at any depth, writes: such a txn needs no journal entry.</summary>
    public static bool IsReadOnly(TxnRequest t) => IsReadOnly(t.Success) && IsReadOnly(t.Failure);

    /// <summary>True when a branch (or a nested txn) puts: what a NOSPACE alarm refuses (etcd's txnHasPut).</summary>
    public static bool HasPut(TxnRequest t) => HasPut(t.Success) || HasPut(t.Failure);

    private static bool HasPut(IList<RequestOp> ops)
    {
        foreach (var op in ops)
        {
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestPut) return true;
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestTxn && HasPut(op.RequestTxn)) return true;
        }
        return false;
    }

    private static bool IsReadOnly(IList<RequestOp> ops)
    {
        foreach (var op in ops)
        {
            switch (op.RequestCase)
            {
                case RequestOp.RequestOneofCase.RequestPut:
                case RequestOp.RequestOneofCase.RequestDeleteRange:
                    return false;
                case RequestOp.RequestOneofCase.RequestTxn when !IsReadOnly(op.RequestTxn):
                    return false;
            }
        }
        return true;
    }

    /// <summary>True when every range of a read-only txn asked for serializable reads.</summary>
    public static bool IsSerializable(TxnRequest t) => IsSerializable(t.Success) && IsSerializable(t.Failure);

    private static bool IsSerializable(IList<RequestOp> ops)
    {
        foreach (var op in ops)
        {
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestRange && !op.RequestRange.Serializable) return false;
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestTxn && !IsSerializable(op.RequestTxn)) return false;
        }
        return true;
    }

    private static Google.Protobuf.Collections.RepeatedField<RequestOp> Branch(TxnRequest t, bool succeeded) => succeeded ? t.Success : t.Failure;

    // Pre-order: this txn's outcome, then the paths of the nested txns of the chosen branch.
    private static void DecidePath(MvccStore.MvccTxn txn, TxnRequest t, List<bool> path)
    {
        bool ok = true;
        foreach (var c in t.Compare)
        {
            if (!Compare(txn, c)) { ok = false; break; }
        }
        path.Add(ok);
        foreach (var op in Branch(t, ok))
        {
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestTxn) DecidePath(txn, op.RequestTxn, path);
        }
    }

    // etcd 3.5 checks the chosen branches in two passes: every put first (ignore_value /
    // ignore_lease keys present, leases exist), then every range's revision; so a bad put wins
    // over a bad range wherever they sit in the txn.
    private EtcdError Check(MvccStore.MvccTxn txn, TxnRequest t, List<bool> path)
    {
        var error = Check(txn, t, path, 0, puts: true, out _);
        return error != EtcdError.None ? error : Check(txn, t, path, 0, puts: false, out _);
    }

    private EtcdError Check(MvccStore.MvccTxn txn, TxnRequest t, List<bool> path, int at, bool puts, out int next)
    {
        next = at + 1;
        foreach (var op in Branch(t, path[at]))
        {
            EtcdError error = EtcdError.None;
            switch (op.RequestCase)
            {
                case RequestOp.RequestOneofCase.RequestRange when !puts:
                    // etcd's checkRange, negative revisions included (they compare against compaction).
                    var r = op.RequestRange;
                    if (r.Revision == 0) break;
                    if (r.Revision > txn.BeginRevision) error = EtcdError.FutureRevision;
                    else if (r.Revision < txn.CompactRevision) error = EtcdError.Compacted;
                    break;
                case RequestOp.RequestOneofCase.RequestPut when puts:
                    var p = op.RequestPut;
                    if ((p.IgnoreValue || p.IgnoreLease) && txn.Get(p.Key) is null) error = EtcdError.KeyNotFound;
                    else if (p.Lease != 0 && !leases.Exists(p.Lease)) error = EtcdError.LeaseNotFound;
                    break;
                case RequestOp.RequestOneofCase.RequestTxn:
                    error = Check(txn, op.RequestTxn, path, next, puts, out next);
                    break;
            }
            if (error != EtcdError.None) return error;
        }
        return EtcdError.None;
    }

    private static int Execute(MvccStore.MvccTxn txn, TxnRequest t, List<bool> path, int at, TxnResponse resp, ref EtcdError error)
    {
        int next = at + 1;
        foreach (var op in Branch(t, path[at]))
        {
            var result = new ResponseOp();
            switch (op.RequestCase)
            {
                case RequestOp.RequestOneofCase.RequestRange:
                    // Checked above: a range inside a txn cannot fail here.
                    RangeExecutor.Execute(txn, op.RequestRange, out var rangeResp);
                    result.ResponseRange = rangeResp;
                    break;
                case RequestOp.RequestOneofCase.RequestPut:
                    var putError = ExecutePut(txn, op.RequestPut, out var putResp);
                    if (putError != EtcdError.None)
                    {
                        error = putError;
                        return next;
                    }
                    result.ResponsePut = putResp;
                    break;
                case RequestOp.RequestOneofCase.RequestDeleteRange:
                    result.ResponseDeleteRange = DeleteRange(txn, op.RequestDeleteRange);
                    break;
                case RequestOp.RequestOneofCase.RequestTxn:
                    var nested = new TxnResponse { Header = new ResponseHeader(), Succeeded = path[next] };
                    next = Execute(txn, op.RequestTxn, path, next, nested, ref error);
                    if (error != EtcdError.None) return next;
                    result.ResponseTxn = nested;
                    break;
            }
            resp.Responses.Add(result);
        }
        return next;
    }

    private static EtcdError ExecutePut(MvccStore.MvccTxn txn, PutRequest p, out PutResponse? response)
    {
        response = null;
        KeyValue? prev = p.IgnoreValue || p.IgnoreLease || p.PrevKv ? txn.Get(p.Key) : null;
        if ((p.IgnoreValue || p.IgnoreLease) && prev is null) return EtcdError.KeyNotFound;
        ByteString value = p.IgnoreValue ? prev!.Value : p.Value;
        long lease = p.IgnoreLease ? prev!.Lease : p.Lease;
        var resp = new PutResponse { Header = new ResponseHeader() };
        if (p.PrevKv && prev is not null) resp.PrevKv = prev;
        txn.Put(p.Key, value, lease);
        resp.Header.Revision = txn.BeginRevision + 1;
        response = resp;
        return EtcdError.None;
    }

    // etcd's applyCompare: every key in the range must satisfy the compare; an empty range
    // compares a zero KeyValue, except that a VALUE compare on a missing key is always false.
    private static bool Compare(MvccStore.MvccTxn txn, Compare c)
    {
        var range = KeyRange.FromRequest(c.Key, c.RangeEnd);
        var kvs = new List<KeyValue>();
        if (txn.Range(range, 0, 0, countOnly: false, keysOnly: false, kvs, out _) != StoreStatus.Ok) return false;
        if (kvs.Count == 0)
        {
            return c.Target != Etcdserverpb.Compare.Types.CompareTarget.Value && CompareOne(c, new KeyValue());
        }
        foreach (var kv in kvs)
        {
            if (!CompareOne(c, kv)) return false;
        }
        return true;
    }

    private static bool CompareOne(Compare c, KeyValue kv)
    {
        int result;
        switch (c.Target)
        {
            case Etcdserverpb.Compare.Types.CompareTarget.Value:
                var v = c.TargetUnionCase == Etcdserverpb.Compare.TargetUnionOneofCase.Value ? c.Value : ByteString.Empty;
                result = KeyBytes.Compare(kv.Value, v);
                break;
            case Etcdserverpb.Compare.Types.CompareTarget.Create:
                result = kv.CreateRevision.CompareTo(c.TargetUnionCase == Etcdserverpb.Compare.TargetUnionOneofCase.CreateRevision ? c.CreateRevision : 0);
                break;
            case Etcdserverpb.Compare.Types.CompareTarget.Mod:
                result = kv.ModRevision.CompareTo(c.TargetUnionCase == Etcdserverpb.Compare.TargetUnionOneofCase.ModRevision ? c.ModRevision : 0);
                break;
            case Etcdserverpb.Compare.Types.CompareTarget.Version:
                result = kv.Version.CompareTo(c.TargetUnionCase == Etcdserverpb.Compare.TargetUnionOneofCase.Version ? c.Version : 0);
                break;
            case Etcdserverpb.Compare.Types.CompareTarget.Lease:
                result = kv.Lease.CompareTo(c.TargetUnionCase == Etcdserverpb.Compare.TargetUnionOneofCase.Lease ? c.Lease : 0);
                break;
            default:
                result = 0;
                break;
        }
        return c.Result switch
        {
            Etcdserverpb.Compare.Types.CompareResult.Equal => result == 0,
            Etcdserverpb.Compare.Types.CompareResult.NotEqual => result != 0,
            Etcdserverpb.Compare.Types.CompareResult.Greater => result > 0,
            Etcdserverpb.Compare.Types.CompareResult.Less => result < 0,
            _ => true,
        };
    }
}

/// <summary>Which leases exist, as of the entry being applied (the lessor, once leases land).</summary>
public interface ILeaseLookup
{
    bool Exists(long leaseId);
}

