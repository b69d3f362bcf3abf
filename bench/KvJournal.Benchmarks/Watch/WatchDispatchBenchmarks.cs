using BenchmarkDotNet.Attributes;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Benchmarks.Mvcc;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Watch;

namespace KvJournal.Benchmarks.Watch;

/// <summary>
/// One put fanned out to 1,000 watchers of its key (10 streams of 100, as etcd's watch benchmark):
/// apply, dispatch to the synced watchers, and take every response off the streams as the writers do.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("Watch")]
public class WatchDispatchBenchmarks
{
    private const int Streams = 10;
    private const int WatchersPerStream = 100;
    private MvccStore _store = null!;
    private KvApplier _applier = null!;
    private WatchHub _hub = null!;
    private readonly List<WatchStream> _streams = [];
    private JournalEntry _put = null!;

    [GlobalSetup]
    public void Setup()
    {
        _store = new MvccStore();
        _applier = RangeBenchmarks.NewApplier(_store);
        _hub = new WatchHub(_store, TimeSpan.FromHours(1), TimeProvider.System);
        var key = ByteString.CopyFromUtf8("/registry/leases/kube-node-lease/node-1");
        for (int s = 0; s < Streams; s++)
        {
            var stream = _hub.OpenStream();
            for (int w = 0; w < WatchersPerStream; w++)
                stream.Create(new WatchSpec(0, KeyRange.FromRequest(key, ByteString.Empty), 0, false, false, false, false, false));
            _streams.Add(stream);
        }
        Drain();
        _put = new JournalEntry { Put = new PutRequest { Key = key, Value = ByteString.CopyFrom(new byte[256]) } };
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var s in _streams) s.Dispose();
        _hub.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark(Description = "put → 1,000 watchers")]
    public int PutToThousandWatchers()
    {
        _store.Lock.EnterWriteLock();
        try { _applier.Apply(_put); }
        finally { _store.Lock.ExitWriteLock(); }
        _hub.Notify(_store.CurrentRevision);
        return Drain();
    }

    private int Drain()
    {
        int taken = 0;
        foreach (var s in _streams)
        {
            while (s.TryTake(out var response))
            {
                s.Sent(response);
                taken++;
            }
        }
        return taken;
    }
}
