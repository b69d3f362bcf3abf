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

    /// <summary>
    /// A compaction of more keys than one step takes drops their old versions over the following
    /// steps (one per applied entry), and no read or hash can tell how far it got.
    /// </summary>
    [Fact]
    public void ACompactionOfManyKeysIsSpreadOverStepsThatNoReadCanTellApart()
    {
        MvccStore Loaded()
        {
            var s = new MvccStore();
            int keys = MvccStore.CompactStepKeys * 2 + 500;
            for (int round = 0; round < 2; round++)
                Write(s, t => { for (int i = 0; i < keys; i++) t.Put(B($"k{i:D6}"), B($"v{round}"), 0); });
            Write(s, t => t.DeleteRange(KeyRange.FromRequest(B("k000000"), ByteString.Empty)));
            return s;
        }
        var stepped = Loaded();
        var whole = Loaded();
        long head = stepped.CurrentRevision;
        whole.Compact(head);
        while (whole.Compacting.To != 0) whole.CompactStep();
        uint hash = whole.HashKv(head);

        stepped.Compact(head);
        Assert.NotEqual(0, stepped.Compacting.To); // more keys than one step
        Assert.True(stepped.SizeBytes > whole.SizeBytes);
        int steps = 0;
        while (stepped.Compacting.To != 0)
        {
            Assert.Equal(hash, stepped.HashKv(head));
            Assert.Equal("v1", Get(stepped, "k015000", head)!.Value.ToStringUtf8());
            Assert.Null(Get(stepped, "k000000", head));
            stepped.CompactStep();
            steps++;
        }
        Assert.Equal(2, steps);
        Assert.Equal((whole.SizeBytes, whole.KeyCount, hash), (stepped.SizeBytes, stepped.KeyCount, stepped.HashKv(head)));
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

    // Thousands of keys force the key index to split and merge its leaves; every scan shape must
    // still agree with a sorted model, including after a compaction drops deleted keys.
    [Fact]
    public void KeyIndexAgreesWithASortedModelThroughSplitsAndMerges()
    {
        var store = new MvccStore();
        var model = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var random = new Random(7);
        string Key(int i) => $"k{i:D5}";
        for (int round = 0; round < 40; round++)
        {
            Write(store, txn =>
            {
                for (int i = 0; i < 500; i++)
                {
                    string k = Key(random.Next(20_000));
                    if (model.ContainsKey(k)) continue;
                    txn.Put(B(k), B(k + round), 0);
                    model[k] = k + round;
                }
            });
            int from = random.Next(20_000), to = from + random.Next(8_000);
            long deleted = 0;
            Write(store, txn => deleted = txn.DeleteRange(KeyRange.FromRequest(B(Key(from)), B(Key(to)))));
            var gone = model.Keys.Where(k => string.CompareOrdinal(k, Key(from)) >= 0 && string.CompareOrdinal(k, Key(to)) < 0).ToList();
            Assert.Equal(gone.Count, deleted);
            foreach (var k in gone) model.Remove(k);
            if (round % 10 == 9) store.Compact(store.CurrentRevision);

            int a = random.Next(20_000), b = a + random.Next(5_000);
            var kvs = new List<KeyValue>();
            Assert.Equal(StoreStatus.Ok, store.Begin(writable: false).Range(KeyRange.FromRequest(B(Key(a)), B(Key(b))), 0, 0, false, false, kvs, out long count));
            var expected = model.Where(p => string.CompareOrdinal(p.Key, Key(a)) >= 0 && string.CompareOrdinal(p.Key, Key(b)) < 0).ToList();
            Assert.Equal(expected.Count, count);
            Assert.Equal(expected.Select(p => p.Key + "=" + p.Value), kvs.Select(kv => kv.Key.ToStringUtf8() + "=" + kv.Value.ToStringUtf8()));

            var all = new List<KeyValue>();
            Assert.Equal(StoreStatus.Ok, store.Begin(writable: false).Range(KeyRange.FromRequest(B("\0"), B("\0")), 0, 0, false, false, all, out _));
            Assert.Equal(model.Keys, all.Select(kv => kv.Key.ToStringUtf8()));
            string probe = Key(random.Next(20_000));
            Assert.Equal(model.TryGetValue(probe, out var v) ? v : null, Get(store, probe, 0)?.Value.ToStringUtf8());
        }
        Assert.True(store.KeyCount >= model.Count);
    }

    // A scan that lets writers in every few keys resumes after the last key it read and still
    // answers at its own revision, whatever the writers did meanwhile.
    [Fact]
    public void YieldingScanResumesAtItsRevisionAcrossWrites()
    {
        var store = new MvccStore();
        Write(store, txn => { for (int i = 0; i < 1000; i++) txn.Put(B($"y{i:D4}"), B("v1"), 0); });
        long rev = store.CurrentRevision;
        var writer = new Thread(() =>
        {
            for (int i = 0; i < 1000; i += 3)
            {
                store.Lock.EnterWriteLock();
                try { Write(store, txn => { txn.Put(B($"y{i:D4}"), B("v2"), 0); txn.Put(B($"y{i:D4}x"), B("new"), 0); }); }
                finally { store.Lock.ExitWriteLock(); }
            }
        });
        var kvs = new List<KeyValue>();
        store.Lock.EnterReadLock();
        writer.Start();
        try { Assert.Equal(StoreStatus.Ok, store.BeginYieldingRead(keys: 7).Range(KeyRange.FromRequest(B("y"), B("z")), rev, 0, false, false, kvs, out long count)); Assert.Equal(1000, count); }
        finally { store.Lock.ExitReadLock(); }
        writer.Join();
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => $"y{i:D4}=v1"), kvs.Select(kv => kv.Key.ToStringUtf8() + "=" + kv.Value.ToStringUtf8()));
    }
}
