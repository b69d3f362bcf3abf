using BenchmarkDotNet.Attributes;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Benchmarks.Mvcc;

/// <summary>A list over 10,000 keys, at the head and at a past revision (kube-apiserver's paged list).</summary>
[MemoryDiagnoser]
[BenchmarkCategory("Read")]
public class RangeBenchmarks
{
    private const int Keys = 10_000;
    private MvccStore _store = null!;
    private RangeRequest _head = null!;
    private RangeRequest _past = null!;

    [GlobalSetup]
    public void Setup()
    {
        _store = new MvccStore();
        var applier = NewApplier(_store);
        var value = ByteString.CopyFrom(new byte[256]);
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < Keys; i++)
                applier.Apply(new JournalEntry { Put = new PutRequest { Key = ByteString.CopyFromUtf8($"/registry/pods/default/pod-{i:D6}"), Value = value } });
        }
        var prefix = ByteString.CopyFromUtf8("/registry/pods/");
        var end = ByteString.CopyFromUtf8("/registry/pods0");
        _head = new RangeRequest { Key = prefix, RangeEnd = end };
        _past = new RangeRequest { Key = prefix, RangeEnd = end, Revision = Keys + 1 };
    }

    [Benchmark]
    public int RangeAtHead() => Run(_head);

    [Benchmark]
    public int RangeAtPastRevision() => Run(_past);

    private int Run(RangeRequest r)
    {
        RangeExecutor.Execute(_store.Begin(writable: false), r, out var resp);
        return resp!.Kvs.Count;
    }

    /// <summary>An applier over <paramref name="store"/> with an empty lease table.</summary>
    internal static KvApplier NewApplier(MvccStore store)
    {
        var lessor = new KvJournal.Storage.Lease.Lessor();
        store.LeaseTracker = lessor;
        return new KvApplier(store, new TxnExecutor(lessor), new KvJournal.Storage.Lease.LeaseExecutor(store, lessor));
    }
}
