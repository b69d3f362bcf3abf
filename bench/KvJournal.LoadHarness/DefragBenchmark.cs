using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// Put latency while Defragment runs back to back, the reference etcd and kvjournal in turn (both
/// with fsync): a keyspace of 50,000 keys is loaded, then 8 writers put for a baseline window and
/// again while a ninth client defragments in a loop. Reports p50 / p99 / max of each window.
/// </summary>
public static class DefragBenchmark
{
    private sealed record Window(double P50, double P99, double Max, int Puts);

    public static async Task RunAsync(HarnessArgs args)
    {
        int keys = args.Get("keys", 50_000);
        int seconds = args.Get("seconds", 4);
        Console.WriteLine($"defrag benchmark: {keys} keys of 256 B, 8 writers, {seconds} s without and {seconds} s with defragment in a loop");
        (Window, Window, int) etcd, kvj;
        await using (var server = await ReferenceEtcdProcess.StartAsync(fsync: true)) etcd = await MeasureAsync("etcd", server, keys, seconds);
        await using (var server = await KvJournalProcess.StartAsync()) kvj = await MeasureAsync("kvjournal", server, keys, seconds);

        Console.WriteLine();
        Console.WriteLine("| put latency (ms) | etcd p50 | etcd p99 | etcd max | kvjournal p50 | kvjournal p99 | kvjournal max |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| without defragment | {etcd.Item1.P50:F1} | {etcd.Item1.P99:F1} | {etcd.Item1.Max:F1} | {kvj.Item1.P50:F1} | {kvj.Item1.P99:F1} | {kvj.Item1.Max:F1} |");
        Console.WriteLine($"| during defragment | {etcd.Item2.P50:F1} | {etcd.Item2.P99:F1} | {etcd.Item2.Max:F1} | {kvj.Item2.P50:F1} | {kvj.Item2.P99:F1} | {kvj.Item2.Max:F1} |");
        Console.WriteLine($"defragment calls completed: etcd {etcd.Item3}, kvjournal {kvj.Item3}");
    }

    private static async Task<(Window Before, Window During, int Defrags)> MeasureAsync(string name, ServerProcess server, int keys, int seconds)
    {
        var value = ByteString.CopyFrom(new byte[256]);
        for (int start = 0; start < keys; start += 100)
        {
            var txn = new TxnRequest();
            for (int i = start; i < Math.Min(keys, start + 100); i++)
                txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8($"/load/{i:D6}"), Value = value } });
            await server.Kv.TxnAsync(txn);
        }
        var before = await PutWindowAsync(server, value, TimeSpan.FromSeconds(seconds), defragment: null);
        var maintenance = new Maintenance.MaintenanceClient(server.Channel);
        int defrags = 0;
        using var stop = new CancellationTokenSource();
        var defragLoop = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await maintenance.DefragmentAsync(new DefragmentRequest());
                defrags++;
            }
        });
        var during = await PutWindowAsync(server, value, TimeSpan.FromSeconds(seconds), defragment: defragLoop);
        await stop.CancelAsync();
        await defragLoop;
        Console.WriteLine($"{name}: p99 {before.P99:F1} ms without, {during.P99:F1} ms during {defrags} defragments");
        return (before, during, defrags);
    }

    private static async Task<Window> PutWindowAsync(ServerProcess server, ByteString value, TimeSpan length, Task? defragment)
    {
        var summary = await PutLoad.RunAsync(8, length, (w, i) =>
            server.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/w/{w}/{i % 1000}"), Value = value }).ResponseAsync);
        if (defragment is { IsFaulted: true }) await defragment;
        return new Window(summary.P50, summary.P99, summary.Max, summary.Count);
    }
}
