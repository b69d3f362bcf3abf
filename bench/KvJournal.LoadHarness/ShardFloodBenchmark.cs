using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// Shard isolation: put latency on a "leases" shard, first alone and then while 8 clients flood
/// an "events" shard of the same process past its quota (and keep hammering it once it refuses).
/// Reports the leases shard's p50 / p99 in both windows; a ratio near 1 is the goal. etcd has no
/// shards: in one etcd the flood would raise NOSPACE for every write, node leases included.
/// With --events-write-rate N the events shard is throttled (--shard-write-rate events=N), so
/// the flood is refused at the door with "too many requests" instead of taking CPU and journal time.
/// </summary>
public static class ShardFloodBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int seconds = args.Get("seconds", 5);
        int quotaMiB = args.Get("quota-mib", 16);
        int writeRate = args.Get("events-write-rate", 0);
        // A flooder that honours push-back waits this long after "too many requests" (client-go waits on a 429).
        int backoffMs = args.Get("flood-backoff-ms", 0);
        int eventsPort = Ports.Free(), leasesPort = Ports.Free();
        string[] throttle = writeRate > 0 ? ["--shard-write-rate", $"events={writeRate}"] : [];
        await using var server = await KvJournalProcess.StartAsync(null,
            ["--shard", $"events=http://127.0.0.1:{eventsPort}", "--shard", $"leases=http://127.0.0.1:{leasesPort}",
            "--shard-quota-backend-bytes", $"events={quotaMiB * 1024L * 1024}", .. throttle]);
        using var eventsChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{eventsPort}");
        using var leasesChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{leasesPort}");
        var events = new KV.KVClient(eventsChannel);
        var leases = new KV.KVClient(leasesChannel);
        Console.WriteLine($"shard flood benchmark: events shard quota {quotaMiB} MiB, write rate {(writeRate > 0 ? $"{writeRate}/s" : "unlimited")}, flood back-off {backoffMs} ms, {seconds} s per window, 4 lease writers, 8 event flooders");

        await RenewalsAsync(leases, TimeSpan.FromSeconds(2)); // warm-up
        var alone = await RenewalsAsync(leases, TimeSpan.FromSeconds(seconds));

        using var stop = new CancellationTokenSource();
        long accepted = 0, refused = 0, throttled = 0;
        var value = ByteString.CopyFrom(new byte[4096]);
        var flood = Enumerable.Range(0, 8).Select(f => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    await events.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/registry/events/ns/{f}-{i}"), Value = value });
                    Interlocked.Increment(ref accepted);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted)
                {
                    bool pushedBack = ex.Status.Detail == "etcdserver: too many requests";
                    Interlocked.Increment(ref pushedBack ? ref throttled : ref refused);
                    if (pushedBack && backoffMs > 0) await Task.Delay(backoffMs);
                }
            }
        })).ToArray();
        var flooded = await RenewalsAsync(leases, TimeSpan.FromSeconds(seconds));
        await stop.CancelAsync();
        await Task.WhenAll(flood);

        Console.WriteLine($"events shard during the flood: {accepted} puts accepted, {refused} refused with NOSPACE, {throttled} with too many requests");
        Console.WriteLine();
        Console.WriteLine("| leases shard put latency (ms) | p50 | p99 | puts/s |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| alone | {alone.P50:F2} | {alone.P99:F2} | {alone.Rate:F0} |");
        Console.WriteLine($"| while the events shard is flooded | {flooded.P50:F2} | {flooded.P99:F2} | {flooded.Rate:F0} |");
        Console.WriteLine($"| flooded / alone | {flooded.P50 / alone.P50:F2} | {flooded.P99 / alone.P99:F2} | {flooded.Rate / alone.Rate:F2} |");
    }

    private static async Task<(double P50, double P99, double Rate)> RenewalsAsync(KV.KVClient leases, TimeSpan length)
    {
        var s = await PutLoad.RunAsync(4, length, (w, i) =>
            leases.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8($"/registry/leases/kube-node-lease/node-{w}-{i % 25}"), Value = ByteString.CopyFromUtf8("renew") }).ResponseAsync);
        return (s.P50, s.P99, s.PerSecond);
    }
}
