using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// Put latency while a compaction drops a large history (kvjournal only): --keys keys are written
/// twice (so half of all versions are superseded), then 4 writers put for --seconds while one
/// Compact to the head revision is made a second into the window. Reports p50 / p99 / max, the
/// puts slower than 100 ms, and how long the Compact call took.
/// </summary>
public static class CompactionBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int keys = args.Get("keys", 1_000_000);
        int seconds = args.Get("seconds", 10);
        Console.WriteLine($"compaction benchmark: {keys} keys of 256 B written twice, then 4 writers for {seconds} s and one compaction of all superseded versions");
        await using var server = await KvJournalProcess.StartAsync(null, "--quota-backend-bytes", $"{8L << 30}");
        var value = ByteString.CopyFrom(new byte[256]);
        await SnapshotBenchmark.LoadAsync(server, keys, value);
        await SnapshotBenchmark.LoadAsync(server, keys, value);
        var head = await server.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/load/"), CountOnly = true });

        double compactMs = 0;
        var compaction = Task.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await server.Kv.CompactAsync(new CompactionRequest { Revision = head.Header.Revision });
            compactMs = clock.Elapsed.TotalMilliseconds;
        });
        var window = await PutLoad.RunAsync(4, TimeSpan.FromSeconds(seconds), (w, i) =>
            server.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/w/{w}/{i % 1000}"), Value = value }).ResponseAsync);
        await compaction;
        Console.WriteLine();
        Console.WriteLine("| put latency around a compaction (ms) | p50 | p99 | max | puts | puts over 100 ms | Compact call (ms) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| {keys:N0} superseded versions | {window.P50:F1} | {window.P99:F1} | {window.Max:F1} | {window.Count} | {window.Over100Ms} | {compactMs:F0} |");
    }
}
