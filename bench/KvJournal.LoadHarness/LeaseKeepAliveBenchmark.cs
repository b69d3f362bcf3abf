using System.Diagnostics;
using Etcdserverpb;
using Grpc.Net.Client;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// etcd's lease-keepalive workload, the reference etcd and kvjournal in turn (both fsync on): each
/// client holds one keep-alive stream on its own lease and sends the next keep-alive as soon as
/// the previous one is answered, for a fixed time. Reports keep-alives answered per second.
/// </summary>
public static class LeaseKeepAliveBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int seconds = args.Get("seconds", 5);
        int[] clientCounts = [1, args.Get("clients", 1000)];
        Console.WriteLine($"lease keep-alive benchmark: {string.Join(" and ", clientCounts)} clients, {seconds} s each, 100 connections at most");

        var etcd = new double[clientCounts.Length];
        var kvj = new double[clientCounts.Length];
        await using (var server = await ReferenceEtcdProcess.StartAsync(fsync: true))
            for (int i = 0; i < clientCounts.Length; i++) etcd[i] = await MeasureAsync("etcd", server, clientCounts[i], seconds);
        await using (var server = await KvJournalProcess.StartAsync())
        {
            await MeasureAsync("kvjournal (warm-up)", server, 100, 2);
            for (int i = 0; i < clientCounts.Length; i++) kvj[i] = await MeasureAsync("kvjournal", server, clientCounts[i], seconds);
        }

        Console.WriteLine();
        Console.WriteLine("| workload | etcd keep-alives/s | kvjournal keep-alives/s | kvjournal / etcd |");
        Console.WriteLine("|---|---:|---:|---:|");
        for (int i = 0; i < clientCounts.Length; i++)
            Console.WriteLine($"| lease-keepalive, {clientCounts[i]} clients | {etcd[i]:F0} | {kvj[i]:F0} | {kvj[i] / etcd[i]:F2} |");
    }

    private static async Task<double> MeasureAsync(string name, ServerProcess server, int clients, int seconds)
    {
        var channels = Enumerable.Range(0, Math.Min(100, clients))
            .Select(_ => GrpcChannel.ForAddress($"http://{server.Endpoint}")).ToArray();
        try
        {
            var leaseClients = channels.Select(c => new Lease.LeaseClient(c)).ToArray();
            var ids = new long[clients];
            for (int i = 0; i < clients; i++)
                ids[i] = (await leaseClients[i % channels.Length].LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 })).ID;
            long answered = 0;
            var clock = Stopwatch.StartNew();
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            await Task.WhenAll(Enumerable.Range(0, clients).Select(i => Task.Run(async () =>
            {
                using var call = leaseClients[i % channels.Length].LeaseKeepAlive();
                var request = new LeaseKeepAliveRequest { ID = ids[i] };
                while (!stop.IsCancellationRequested)
                {
                    await call.RequestStream.WriteAsync(request);
                    if (!await call.ResponseStream.MoveNext(CancellationToken.None)) break;
                    Interlocked.Increment(ref answered);
                }
                await call.RequestStream.CompleteAsync();
            })));
            double rate = answered / clock.Elapsed.TotalSeconds;
            Console.WriteLine($"{name}: {clients} clients, {rate:F0} keep-alives/s");
            return rate;
        }
        finally
        {
            foreach (var c in channels) c.Dispose();
        }
    }
}
