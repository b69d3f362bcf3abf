using System.Diagnostics;
using Etcdserverpb;
using Grpc.Net.Client;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// etcd's lease-keepalive workload, the reference etcd and kvjournal in turn (both fsync on): each
/// client holds one keep-alive stream on its own lease and sends the next keep-alive as soon as
/// the previous one is answered, for a fixed time. Reports keep-alives answered per second.
/// Then the shape of etcd clientv3's KeepAlive: a few long-lived streams, each carrying the
/// renewals of many leases (1,000 leases over 10 streams; each lease renewed again as soon as its
/// answer came), with the server's CPU per renewal.
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

        int streams = args.Get("streams", 10), leases = args.Get("leases", 1000);
        (double Rate, double CpuMicros) etcdShared, kvjShared;
        await using (var server = await ReferenceEtcdProcess.StartAsync(fsync: true))
            etcdShared = await SharedStreamsAsync("etcd", server, streams, leases, seconds);
        await using (var server = await KvJournalProcess.StartAsync())
        {
            await SharedStreamsAsync("kvjournal (warm-up)", server, streams, leases, 2);
            kvjShared = await SharedStreamsAsync("kvjournal", server, streams, leases, seconds);
        }

        Console.WriteLine();
        Console.WriteLine("| workload | etcd keep-alives/s | kvjournal keep-alives/s | kvjournal / etcd |");
        Console.WriteLine("|---|---:|---:|---:|");
        for (int i = 0; i < clientCounts.Length; i++)
            Console.WriteLine($"| lease-keepalive, {clientCounts[i]} clients | {etcd[i]:F0} | {kvj[i]:F0} | {kvj[i] / etcd[i]:F2} |");
        Console.WriteLine($"| clientv3 KeepAlive shape, {leases} leases over {streams} streams | {etcdShared.Rate:F0} | {kvjShared.Rate:F0} | {kvjShared.Rate / etcdShared.Rate:F2} |");
        Console.WriteLine();
        Console.WriteLine($"server CPU per renewal, clientv3 shape: etcd {etcdShared.CpuMicros:F1} µs, kvjournal {kvjShared.CpuMicros:F1} µs, ratio {kvjShared.CpuMicros / etcdShared.CpuMicros:F2}");
    }

    // Each stream carries leases / streams leases, all in flight: a lease's next keep-alive goes out when its answer arrives.
    private static async Task<(double Rate, double CpuMicros)> SharedStreamsAsync(string name, ServerProcess server, int streams, int leases, int seconds)
    {
        using var channel = GrpcChannel.ForAddress($"http://{server.Endpoint}");
        var client = new Lease.LeaseClient(channel);
        var ids = new long[leases];
        for (int i = 0; i < leases; i++) ids[i] = (await client.LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 })).ID;
        long answered = 0;
        var cpu = server.CpuTime();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await Task.WhenAll(Enumerable.Range(0, streams).Select(s => Task.Run(async () =>
        {
            using var call = client.LeaseKeepAlive();
            var mine = ids.Where((_, i) => i % streams == s).ToArray();
            foreach (long id in mine) await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id });
            int inFlight = mine.Length;
            // Once the time is up no lease is renewed again; the stream ends when every answer is in.
            while (inFlight > 0 && await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                Interlocked.Increment(ref answered);
                inFlight--;
                if (stop.IsCancellationRequested) continue;
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = call.ResponseStream.Current.ID });
                inFlight++;
            }
            await call.RequestStream.CompleteAsync();
        })));
        double elapsed = clock.Elapsed.TotalSeconds;
        double cpuMicros = (server.CpuTime() - cpu).TotalMicroseconds / Math.Max(1, answered);
        double rate = answered / elapsed;
        Console.WriteLine($"{name}: {leases} leases over {streams} streams, {rate:F0} keep-alives/s, {cpuMicros:F1} µs server CPU each");
        return (rate, cpuMicros);
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
