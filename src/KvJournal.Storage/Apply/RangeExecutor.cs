using Etcdserverpb;
using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Apply;

/// <summary>
/// A Range request against a txn view, with etcd's filtering, sorting, limit and count rules
/// (etcd: server/etcdserver/txn executeRange).
/// </summary>
public static class RangeExecutor
{
    public static EtcdError Execute(MvccStore.MvccTxn txn, RangeRequest r, out RangeResponse? response)
    {
        response = null;
        bool filtered = r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0;
        // Sorting and filters need every key first; otherwise fetch one past the limit to know "more".
        long limit = r.SortOrder != RangeRequest.Types.SortOrder.None || filtered ? 0 : r.Limit;
        if (limit > 0) limit++;

        var kvs = new List<KeyValue>();
        var status = txn.Range(KeyRange.FromRequest(r.Key, r.RangeEnd), r.Revision, limit, r.CountOnly, r.KeysOnly, kvs, out long count);
        if (status == StoreStatus.Compacted) return EtcdError.Compacted;
        if (status == StoreStatus.FutureRevision) return EtcdError.FutureRevision;

        if (filtered) kvs.RemoveAll(kv => Pruned(r, kv));
        Sort(kvs, r.SortTarget, EffectiveOrder(r));

        var resp = new RangeResponse { Header = new ResponseHeader { Revision = txn.ReadRevision }, Count = count };
        int take = kvs.Count;
        if (r.Limit > 0 && kvs.Count > r.Limit)
        {
            take = (int)r.Limit;
            resp.More = true;
        }
        for (int i = 0; i < take; i++) resp.Kvs.Add(kvs[i]);
        response = resp;
        return EtcdError.None;
    }

    private static bool Pruned(RangeRequest r, KeyValue kv) =>
        (r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision) ||
        (r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision) ||
        (r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision) ||
        (r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision);

    // Keys come out ascending already: a non-key target with no order sorts ascending, and
    // key/ascend needs no work (etcd does the same).
    private static RangeRequest.Types.SortOrder EffectiveOrder(RangeRequest r)
    {
        if (r.SortTarget != RangeRequest.Types.SortTarget.Key && r.SortOrder == RangeRequest.Types.SortOrder.None)
            return RangeRequest.Types.SortOrder.Ascend;
        if (r.SortTarget == RangeRequest.Types.SortTarget.Key && r.SortOrder == RangeRequest.Types.SortOrder.Ascend)
            return RangeRequest.Types.SortOrder.None;
        return r.SortOrder;
    }

    // Stable, so ties keep key order (as etcd's insertion sort does for small results).
    private static void Sort(List<KeyValue> kvs, RangeRequest.Types.SortTarget target, RangeRequest.Types.SortOrder order)
    {
        if (order is not (RangeRequest.Types.SortOrder.Ascend or RangeRequest.Types.SortOrder.Descend) || kvs.Count < 2) return;
        int sign = order == RangeRequest.Types.SortOrder.Descend ? -1 : 1;
        var indexed = new (KeyValue Kv, int Index)[kvs.Count];
        for (int i = 0; i < indexed.Length; i++) indexed[i] = (kvs[i], i);
        Array.Sort(indexed, (a, b) =>
        {
            int c = sign * CompareBy(target, a.Kv, b.Kv);
            return c != 0 ? c : a.Index.CompareTo(b.Index);
        });
        for (int i = 0; i < indexed.Length; i++) kvs[i] = indexed[i].Kv;
    }

    private static int CompareBy(RangeRequest.Types.SortTarget target, KeyValue a, KeyValue b) => target switch
    {
        RangeRequest.Types.SortTarget.Key => KeyBytes.Compare(a.Key, b.Key),
        RangeRequest.Types.SortTarget.Version => a.Version.CompareTo(b.Version),
        RangeRequest.Types.SortTarget.Create => a.CreateRevision.CompareTo(b.CreateRevision),
        RangeRequest.Types.SortTarget.Mod => a.ModRevision.CompareTo(b.ModRevision),
        RangeRequest.Types.SortTarget.Value => KeyBytes.Compare(a.Value, b.Value),
        _ => 0,
    };
}
