using BenchmarkDotNet.Attributes;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Benchmarks.Mvcc;

/// <summary>Applying journal entries to the store: the per-write CPU cost behind every acknowledged put.</summary>
[MemoryDiagnoser]
[BenchmarkCategory("Write")]
public class ApplyBenchmarks
{
    private const int Batch = 1000;
    private JournalEntry[] _puts = [];
    private JournalEntry[] _txns = [];
    private KvApplier _applier = null!;

    [IterationSetup]
    public void Setup()
    {
        var store = new MvccStore();
        _applier = RangeBenchmarks.NewApplier(store);
        var value = ByteString.CopyFrom(new byte[256]);
        _puts = new JournalEntry[Batch];
        _txns = new JournalEntry[Batch];
        for (int i = 0; i < Batch; i++)
        {
            var key = ByteString.CopyFromUtf8($"/registry/pods/default/pod-{i:D6}");
            _puts[i] = new JournalEntry { Put = new PutRequest { Key = key, Value = value } };
            // kube-apiserver's GuaranteedUpdate shape: compare mod revision, put, else get.
            _txns[i] = new JournalEntry
            {
                Txn = new TxnRequest
                {
                    Compare = { new Compare { Key = key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = 0 } },
                    Success = { new RequestOp { RequestPut = new PutRequest { Key = key, Value = value } } },
                    Failure = { new RequestOp { RequestRange = new RangeRequest { Key = key } } },
                },
            };
        }
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public void ApplyPuts()
    {
        foreach (var e in _puts) _applier.Apply(e);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public void ApplyCreateTxns()
    {
        foreach (var e in _txns) _applier.Apply(e);
    }
}
