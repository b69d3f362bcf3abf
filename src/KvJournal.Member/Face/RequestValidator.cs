using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Member.Propose;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Watch;

namespace KvJournal.Member.Face;

/// <summary>
/// Checks a request before anything is proposed, as etcd's v3rpc layer does (checkRangeRequest,
/// checkPutRequest, checkDeleteRequest, checkTxnRequest and checkIntervals in v3rpc/key.go).
/// </summary>
public static class RequestValidator
{
    public static EtcdError Range(RangeRequest r)
    {
        // etcd 3.5 accepts any sort_order and sorts only for ASCEND/DESCEND; so do we.
        return r.Key.IsEmpty ? EtcdError.EmptyKey : EtcdError.None;
    }

    public static EtcdError Put(PutRequest p)
    {
        if (p.Key.IsEmpty) return EtcdError.EmptyKey;
        if (p.IgnoreValue && !p.Value.IsEmpty) return EtcdError.ValueProvided;
        if (p.IgnoreLease && p.Lease != 0) return EtcdError.LeaseProvided;
        return EtcdError.None;
    }

    /// <summary>
    /// Turns a watch create into a spec, with etcd's normalisation (v3rpc watch.go recvLoop): an
    /// empty key is "\0", the smallest key; range_end "\0" means every key ≥ key. Returns the
    /// cancel reason etcd gives when it refuses the create, or null.
    /// </summary>
    public static string? WatchCreate(WatchCreateRequest c, out WatchSpec spec)
    {
        spec = default;
        if (c.StartRevision < 0) return EtcdErrorTable.Describe(EtcdError.Compacted).Message;
        var key = c.Key.IsEmpty ? ByteString.CopyFrom(0) : c.Key;
        var range = KeyRange.FromRequest(key, c.RangeEnd);
        if (range.End is { } end && KeyBytes.Compare(key, end) >= 0) return WatchErrors.EmptyRange;
        bool noPut = false, noDelete = false;
        foreach (var f in c.Filters)
        {
            if (f == WatchCreateRequest.Types.FilterType.Noput) noPut = true;
            else if (f == WatchCreateRequest.Types.FilterType.Nodelete) noDelete = true;
        }
        spec = new WatchSpec(c.WatchId, range, c.StartRevision, c.PrevKv, noPut, noDelete, c.ProgressNotify, c.Fragment);
        return null;
    }

    /// <summary>Raising or clearing an alarm of a type etcd does not define is refused (etcd 3.5 panics on it).</summary>
    public static EtcdError Alarm(AlarmRequest a) =>
        a.Action != AlarmRequest.Types.AlarmAction.Get && !Enum.IsDefined(a.Alarm) ? EtcdError.UnknownAlarm : EtcdError.None;

    public static EtcdError DeleteRange(DeleteRangeRequest d) => d.Key.IsEmpty ? EtcdError.EmptyKey : EtcdError.None;

    /// <summary>Shape checks, then etcd's rule that one branch never writes a key twice.</summary>
    public static EtcdError Txn(TxnRequest t, int maxTxnOps)
    {
        var error = TxnShape(t, maxTxnOps, depth: 1);
        if (error != EtcdError.None) return error;
        if (!Intervals(t.Success, out _, out _) || !Intervals(t.Failure, out _, out _)) return EtcdError.DuplicateKey;
        return EtcdError.None;
    }

    // depth: this txn's level (1 = the request itself); deeper than the journal entry format
    // carries is refused before the recursion below could run out of stack.
    private static EtcdError TxnShape(TxnRequest t, int maxTxnOps, int depth)
    {
        if (depth > JournalEntryCodec.MaxTxnDepth) return EtcdError.TxnTooDeep;
        int ops = Math.Max(t.Compare.Count, Math.Max(t.Success.Count, t.Failure.Count));
        if (ops > maxTxnOps) return EtcdError.TooManyOps;
        foreach (var c in t.Compare)
        {
            if (c.Key.IsEmpty) return EtcdError.EmptyKey;
        }
        foreach (var op in t.Success)
        {
            var e = Op(op, maxTxnOps, depth);
            if (e != EtcdError.None) return e;
        }
        foreach (var op in t.Failure)
        {
            var e = Op(op, maxTxnOps, depth);
            if (e != EtcdError.None) return e;
        }
        return EtcdError.None;
    }

    private static EtcdError Op(RequestOp op, int maxTxnOps, int depth) => op.RequestCase switch
    {
        RequestOp.RequestOneofCase.RequestRange => Range(op.RequestRange),
        RequestOp.RequestOneofCase.RequestPut => Put(op.RequestPut),
        RequestOp.RequestOneofCase.RequestDeleteRange => DeleteRange(op.RequestDeleteRange),
        RequestOp.RequestOneofCase.RequestTxn => TxnShape(op.RequestTxn, maxTxnOps, depth + 1),
        _ => EtcdError.EmptyOp,
    };

    // etcd's checkIntervals: the keys a branch puts (nested txns included) must be distinct and
    // outside every range it deletes. A nested txn's then/else branches exclude each other, so a
    // key put in both is fine. Delete intervals compare as etcd's: an empty end is a single key,
    // any other end (even "\0") is a literal exclusive bound.
    private static bool Intervals(IList<RequestOp> ops, out HashSet<ByteString> puts, out List<(ByteString Key, ByteString End)> dels)
    {
        puts = [];
        dels = [];
        foreach (var op in ops)
        {
            if (op.RequestCase == RequestOp.RequestOneofCase.RequestDeleteRange)
                dels.Add((op.RequestDeleteRange.Key, op.RequestDeleteRange.RangeEnd));
        }
        foreach (var op in ops)
        {
            if (op.RequestCase != RequestOp.RequestOneofCase.RequestTxn) continue;
            if (!Intervals(op.RequestTxn.Success, out var putsThen, out var delsThen)) return false;
            if (!Intervals(op.RequestTxn.Failure, out var putsElse, out var delsElse)) return false;
            foreach (var k in putsThen)
            {
                if (puts.Contains(k) || Intersects(dels, k)) return false;
                puts.Add(k);
            }
            foreach (var k in putsElse)
            {
                if (puts.Contains(k) && !putsThen.Contains(k)) return false;
                if (Intersects(dels, k)) return false;
                puts.Add(k);
            }
            dels.AddRange(delsThen);
            dels.AddRange(delsElse);
        }
        foreach (var op in ops)
        {
            if (op.RequestCase != RequestOp.RequestOneofCase.RequestPut) continue;
            var k = op.RequestPut.Key;
            if (puts.Contains(k) || Intersects(dels, k)) return false;
            puts.Add(k);
        }
        return true;
    }

    private static bool Intersects(List<(ByteString Key, ByteString End)> dels, ByteString key)
    {
        foreach (var (begin, end) in dels)
        {
            if (end.IsEmpty)
            {
                if (begin.Equals(key)) return true;
            }
            else if (begin.Span.SequenceCompareTo(key.Span) <= 0 && key.Span.SequenceCompareTo(end.Span) < 0)
            {
                return true;
            }
        }
        return false;
    }
}
