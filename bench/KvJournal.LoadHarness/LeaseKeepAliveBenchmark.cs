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

    // The clientv3 shape against a server this harness started, with the server's CPU per renewal.
    private static async Task<(double Rate, double CpuMicros)> SharedStreamsAsync(string name, ServerProcess server, int streams, int leases, int seconds)
    {
        var cpu = server.CpuTime();
        var run = await SharedStreamsAsync(server.Endpoint, streams, leases, seconds);
        double cpuMicros = (server.CpuTime() - cpu).TotalMicroseconds / Math.Max(1, run.Answered);
        Console.WriteLine($"{name}: {leases} leases over {streams} streams, {run.Rate:F0} keep-alives/s, {cpuMicros:F1} µs server CPU each");
        return (run.Rate, cpuMicros);
    }

    /// <summary>Renewals answered in a run of the clientv3 shape, how long it took, and each renewal's round trip.</summary>
    public sealed record SharedStreamsRun(TimeSpan Elapsed, double[] LatencySeconds)
    {
        public long Answered => LatencySeconds.Length;

        public double Rate => Answered / Elapsed.TotalSeconds;
    }

    /// <summary>
    /// etcd clientv3's KeepAlive shape against <paramref name="endpoint"/>: <paramref name="leases"/>
    /// leases granted, then carried by <paramref name="streams"/> long-lived streams, each renewal
    /// in flight at once and a lease renewed again as soon as its answer came, for
    /// <paramref name="seconds"/>. The leases are granted before the clock starts.
    /// </summary>
    public static async Task<SharedStreamsRun> SharedStreamsAsync(string endpoint, int streams, int leases, int seconds)
    {
        using var channel = GrpcChannel.ForAddress($"http://{endpoint}");
        var client = new Lease.LeaseClient(channel);
        var ids = new long[leases];
        for (int i = 0; i < leases; i++) ids[i] = (await client.LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 })).ID;
        var latencies = new List<double>[streams];
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await Task.WhenAll(Enumerable.Range(0, streams).Select(s => Task.Run(async () =>
        {
            var mine = ids.Where((_, i) => i % streams == s).ToArray();
            var sent = new Dictionary<long, long>(mine.Length); // lease -> when its renewal went out
            var taken = latencies[s] = new List<double>(1 << 16);
            using var call = client.LeaseKeepAlive();
            foreach (long id in mine)
            {
                sent[id] = Stopwatch.GetTimestamp();
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id });
            }
            int inFlight = mine.Length;
            // Once the time is up no lease is renewed again; the stream ends when every answer is in.
            while (inFlight > 0 && await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                long id = call.ResponseStream.Current.ID;
                taken.Add(Stopwatch.GetElapsedTime(sent[id]).TotalSeconds);
                inFlight--;
                if (stop.IsCancellationRequested) continue;
                sent[id] = Stopwatch.GetTimestamp();
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id });
                inFlight++;
            }
            await call.RequestStream.CompleteAsync();
        })));
        return new SharedStreamsRun(clock.Elapsed, [.. latencies.SelectMany(l => l)]);
    }

    /// <summary>
    /// The clientv3 shape as one workload of bench/compare.sh, against 127.0.0.1:--port, its report
    /// in the lines etcd's benchmark tool prints (Total, Average, Requests/sec, 99% in), so the
    /// script reads both tools' reports alike.
    /// </summary>
    public static async Task RunStreamsClientAsync(HarnessArgs args)
    {
        int port = args.Get("port", 0);
        if (port <= 0) throw new ArgumentException("lease-streams needs --port N (a server on 127.0.0.1)");
        var run = await SharedStreamsAsync($"127.0.0.1:{port}", args.Get("streams", 10), args.Get("leases", 1000), args.Get("seconds", 5));
        Array.Sort(run.LatencySeconds);
        double average = run.LatencySeconds.Length > 0 ? run.LatencySeconds.Average() : 0;
        double p99 = run.LatencySeconds.Length > 0 ? run.LatencySeconds[(int)Math.Min(run.LatencySeconds.Length - 1, run.LatencySeconds.Length * 0.99)] : 0;
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        Console.WriteLine("Summary:");
        Console.WriteLine(string.Format(invariant, "  Total:\t{0:F4} secs.", run.Elapsed.TotalSeconds));
        Console.WriteLine(string.Format(invariant, "  Average:\t{0:F4} secs.", average));
        Console.WriteLine(string.Format(invariant, "  Requests/sec:\t{0:F4}", run.Rate));
        Console.WriteLine();
        Console.WriteLine("Latency distribution:");
        Console.WriteLine(string.Format(invariant, "  99% in {0:F4} secs.", p99));
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
