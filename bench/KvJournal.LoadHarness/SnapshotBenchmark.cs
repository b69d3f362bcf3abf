using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// Put latency while a member writes a state snapshot of a large keyspace (kvjournal only; etcd
/// has no such step). --keys keys of 256 B are loaded in txns of 100, with --snapshot-count set so
/// that the snapshot starts a few thousand puts into the measured window; 4 writers put for
/// --seconds. Reports p50 / p99 / max, the puts slower than 100 ms, and the member's own log line
/// about the snapshot; --snapshots 0 runs the same without snapshots, as the baseline. Run it
/// against another build with KVJOURNAL_SERVER to compare.
/// </summary>
public static class SnapshotBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int keys = args.Get("keys", 1_000_000);
        int seconds = args.Get("seconds", 20);
        int loadTxns = (keys + 99) / 100;
        bool snapshots = args.Get("snapshots", 1) != 0; // --snapshots 0: the same load with none, as the baseline
        Console.WriteLine($"snapshot benchmark: {keys} keys of 256 B, then 4 writers for {seconds} s while the state snapshot is taken");
        await using var server = await KvJournalProcess.StartAsync(null, "--snapshot-count", snapshots ? $"{loadTxns + 3000}" : "0", "--quota-backend-bytes", $"{8L << 30}");
        var value = ByteString.CopyFrom(new byte[256]);
        await LoadAsync(server, keys, value);

        var window = await PutLoad.RunAsync(4, TimeSpan.FromSeconds(seconds), (w, i) =>
            server.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/w/{w}/{i % 1000}"), Value = value }).ResponseAsync);
        Console.WriteLine();
        Console.WriteLine("| put latency while snapshotting (ms) | p50 | p99 | max | puts | puts over 100 ms |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| {keys:N0} keys, {(snapshots ? "snapshots every 3,000 entries" : "no snapshots")} | {window.P50:F1} | {window.P99:F1} | {window.Max:F1} | {window.Count} | {window.Over100Ms} |");
        foreach (var line in server.Output.Split('\n').Where(l => l.Contains("state snapshot", StringComparison.Ordinal)))
            Console.WriteLine($"member: {line.Trim()}");
    }

    /// <summary><paramref name="keys"/> keys in txns of 100 puts from 8 clients: one revision per txn.</summary>
    internal static async Task LoadAsync(ServerProcess server, int keys, ByteString value, string prefix = "/load/")
    {
        int txns = (keys + 99) / 100;
        var load = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (int t = w; t < txns; t += 8)
            {
                var txn = new TxnRequest();
                for (int i = t * 100; i < Math.Min(keys, t * 100 + 100); i++)
                    txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8($"{prefix}{i:D7}"), Value = value } });
                await server.Kv.TxnAsync(txn);
            }
        })));
        Console.WriteLine($"loaded {keys} keys in {load.Elapsed.TotalSeconds:F1} s, RSS {server.ResidentBytes().Current >> 20} MiB");
    }
}
