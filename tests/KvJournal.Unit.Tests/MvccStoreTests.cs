using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;
using Mvccpb;
using Xunit;

namespace KvJournal.Unit.Tests;

public sealed class MvccStoreTests
{
    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    private static void Write(MvccStore store, Action<MvccStore.MvccTxn> write)
    {
        var txn = store.Begin(writable: true);
        write(txn);
        txn.End();
    }

    private static KeyValue? Get(MvccStore store, string key, long rev)
    {
        var kvs = new List<KeyValue>();
        var status = store.Begin(writable: false).Range(KeyRange.FromRequest(B(key), ByteString.Empty), rev, 0, false, false, kvs, out _);
        Assert.Equal(StoreStatus.Ok, status);
        return kvs.SingleOrDefault();
    }

    [Fact]
    public void RevisionsVersionsAndTombstonesFollowEtcd()
    {
        var store = new MvccStore();
        Assert.Equal(1, store.CurrentRevision);
        Write(store, t => t.Put(B("a"), B("1"), 0));                 // rev 2: create
        Write(store, t => t.Put(B("a"), B("2"), 0));                 // rev 3: version 2
        Write(store, t => Assert.Equal(1, t.DeleteRange(KeyRange.FromRequest(B("a"), ByteString.Empty)))); // rev 4
        Write(store, t => Assert.Equal(0, t.DeleteRange(KeyRange.FromRequest(B("a"), ByteString.Empty)))); // no change, no revision
        Write(store, t => t.Put(B("a"), B("3"), 0));                 // rev 5: re-created
        Assert.Equal(5, store.CurrentRevision);
        Assert.Equal((2L, 3L, 2L), (Get(store, "a", 3)!.CreateRevision, Get(store, "a", 3)!.ModRevision, Get(store, "a", 3)!.Version));
        Assert.Null(Get(store, "a", 4));
        Assert.Equal((5L, 5L, 1L), (Get(store, "a", 0)!.CreateRevision, Get(store, "a", 0)!.ModRevision, Get(store, "a", 0)!.Version));
    }

    [Fact]
    public void CompactionKeepsWhatReadsAtTheCompactRevisionNeed()
    {
        var store = new MvccStore();
        Write(store, t => t.Put(B("kept"), B("old"), 0));     // 2
        Write(store, t => t.Put(B("gone"), B("x"), 0));       // 3
        Write(store, t => t.DeleteRange(KeyRange.FromRequest(B("gone"), ByteString.Empty))); // 4
        Write(store, t => t.Put(B("kept"), B("new"), 0));     // 5
        store.Compact(4);
        Assert.Equal("old", Get(store, "kept", 4)!.Value.ToStringUtf8());
        Assert.Equal("new", Get(store, "kept", 5)!.Value.ToStringUtf8());
        Assert.Null(Get(store, "gone", 4));
        Assert.Equal(2, store.KeyCount); // the tombstone at the compact revision stays for watchers from 4
        var status = store.Begin(writable: false).Range(KeyRange.FromRequest(B("kept"), ByteString.Empty), 3, 0, false, false, [], out _);
        Assert.Equal(StoreStatus.Compacted, status);
        store.Compact(5);
        Assert.Equal(1, store.KeyCount); // now the deleted key's history is gone entirely
    }

    [Fact]
    public void AbortedTxnLeavesNoTrace()
    {
        var store = new MvccStore();
        Write(store, t => t.Put(B("a"), B("1"), 0));
        long size = store.SizeBytes;
        var txn = store.Begin(writable: true);
        txn.Put(B("a"), B("2"), 0);
        txn.Put(B("new"), B("x"), 0);
        txn.DeleteRange(KeyRange.FromRequest(B("a"), ByteString.CopyFrom(0)));
        txn.Abort();
        txn.End();
        Assert.Equal(2, store.CurrentRevision);
        Assert.Equal(1, store.KeyCount);
        Assert.Equal(size, store.SizeBytes);
        Assert.Equal("1", Get(store, "a", 0)!.Value.ToStringUtf8());
    }

    [Fact]
    public void TxnComparesAgainstStateBeforeItsOwnWrites()
    {
        var store = new MvccStore();
        var txns = new TxnExecutor(new KvJournal.Storage.Lease.Lessor());
        var t = new TxnRequest
        {
            Compare = { new Compare { Key = B("k"), Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = 0 } },
            Success =
            {
                new RequestOp { RequestPut = new PutRequest { Key = B("k"), Value = B("v") } },
                new RequestOp { RequestTxn = new TxnRequest { Compare = { new Compare { Key = B("k"), Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = 0 } } } },
                new RequestOp { RequestRange = new RangeRequest { Key = B("k") } },
            },
        };
        var txn = store.Begin(writable: true);
        Assert.Equal(EtcdError.None, txns.Txn(txn, t, out var resp));
        txn.End();
        Assert.True(resp!.Succeeded);
        Assert.True(resp.Responses[1].ResponseTxn.Succeeded);            // nested compare saw the pre-txn state
        Assert.Equal("v", resp.Responses[2].ResponseRange.Kvs.Single().Value.ToStringUtf8()); // the range sees the put
        Assert.Equal(2, resp.Header.Revision);
    }
}
