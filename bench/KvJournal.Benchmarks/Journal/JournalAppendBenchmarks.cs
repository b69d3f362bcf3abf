using BenchmarkDotNet.Attributes;
using KvJournal.Journal.Embedded;

namespace KvJournal.Benchmarks.Journal;

/// <summary>
/// The embedded journal on this machine's disk: one 300-byte entry appended and awaited until
/// durable (the floor under a 1-client put), and 64 appended together and awaited (group commit:
/// one flush shared by all).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("Journal")]
public class JournalAppendBenchmarks
{
    private string _dir = "";
    private FasterLogJournal _journal = null!;
    private readonly byte[] _entry = new byte[300];
    private readonly Task<long>[] _batch = new Task<long>[64];

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"kvjournal-bench-{Guid.NewGuid():N}");
        _journal = new FasterLogJournal(_dir, 2 * 1024 * 1024);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _journal.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_dir, recursive: true);
    }

    [Benchmark(Description = "append 1 and await durable")]
    public async Task<long> AppendOne() => await _journal.AppendAsync(_entry);

    [Benchmark(Description = "append 64 and await all durable", OperationsPerInvoke = 64)]
    public async Task<long> AppendBatchOf64()
    {
        for (int i = 0; i < _batch.Length; i++) _batch[i] = _journal.AppendAsync(_entry).AsTask();
        long last = 0;
        foreach (var t in _batch) last = await t;
        return last;
    }
}
