using System.Diagnostics;
using System.Globalization;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// `keyspace`: a big cluster's keyspace (--mib of live values, default 8 GiB, in the cluster
/// shape's objects: a 300 B node lease, a 10 KiB node and --pods-per-node 4 KiB pods per node)
/// loaded into one kvjournal member and one etcd in turn, both with fsync: resident memory per
/// live byte, a full paged LIST of every resource (pages of 10,000 at one revision, as the
/// watch cache lists), and kill -9 to ready again (the first linearizable read of the last key
/// written), with the member's snapshot and journal replay or etcd's bbolt and WAL.
/// </summary>
public static class KeyspaceBenchmark
{
    private sealed record Figures(double LoadSeconds, long LiveBytes, long ResidentBytes, double ListSeconds, double RestartSeconds, long ResidentAfterRestart);

    public static async Task RunAsync(HarnessArgs args)
    {
        long live = args.Get("mib", 8192) * (1L << 20);
        var shape = ClusterShape.From(args);
        int nodes = (int)(live / shape.StandingBytes(1));
        string quota = $"{4 * live}";
        Console.WriteLine($"large keyspace: {nodes:N0} nodes' objects ({shape.StandingBytes(nodes) >> 20} MiB of values), loaded, listed, then kill -9 and restart");

        // Every process started, the restarted ones too, is stopped however the run ends.
        var started = new List<ServerProcess>();
        // --setups 1: kvjournal only, 2: etcd only (the missing one's column repeats the other's), 3: both.
        int setups = args.Get("setups", 3);
        Figures? etcd = null, kvj = null;
        try
        {
            if ((setups & 2) != 0)
            {
                var etcdServer = await ReferenceEtcdProcess.StartAsync(fsync: true, "--quota-backend-bytes", quota);
                started.Add(etcdServer);
                etcd = await MeasureAsync("etcd", etcdServer, shape, nodes, async s => Started(await s.RestartAsync(TimeSpan.FromMinutes(10))));
                foreach (var s in started) await s.DisposeAsync();
            }
            if ((setups & 1) != 0)
            {
                var kvjServer = await KvJournalProcess.StartAsync(null, "--quota-backend-bytes", quota);
                started.Add(kvjServer);
                kvj = await MeasureAsync("kvjournal", kvjServer, shape, nodes, async s => Started(await s.RestartAsync(TimeSpan.FromMinutes(10))));
            }
        }
        finally
        {
            foreach (var s in started) await s.DisposeAsync();
        }

        T Started<T>(T server) where T : ServerProcess
        {
            started.Add(server);
            return server;
        }

        etcd ??= kvj!;
        kvj ??= etcd;

        Console.WriteLine();
        Console.WriteLine("| | etcd | kvjournal | kvjournal / etcd |");
        Console.WriteLine("|---|---:|---:|---:|");
        Row("live data (MiB)", etcd.LiveBytes >> 20, kvj.LiveBytes >> 20);
        Row("load (s)", etcd.LoadSeconds, kvj.LoadSeconds);
        Row("RSS after load (MiB)", etcd.ResidentBytes >> 20, kvj.ResidentBytes >> 20);
        Row("resident bytes per live byte", (double)etcd.ResidentBytes / etcd.LiveBytes, (double)kvj.ResidentBytes / kvj.LiveBytes);
        Row("full LIST, pages of 10,000 (s)", etcd.ListSeconds, kvj.ListSeconds);
        Row("kill -9 to ready (s)", etcd.RestartSeconds, kvj.RestartSeconds);
        Row("RSS after restart (MiB)", etcd.ResidentAfterRestart >> 20, kvj.ResidentAfterRestart >> 20);
    }

    private static void Row(string name, double etcd, double kvj) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {etcd:0.##} | {kvj:0.##} | {kvj / etcd:F2} |"));

    private static async Task<Figures> MeasureAsync<T>(string name, T server, ClusterShape shape, int nodes, Func<T, Task<T>> restart) where T : ServerProcess
    {
        var endpoints = new ClusterEndpoints(server.Endpoint, server.Endpoint, server.Endpoint);
        double loadSeconds, listSeconds;
        int listed = 0;
        var clock = Stopwatch.StartNew();
        await using (var load = new ClusterLoad(endpoints, shape))
        {
            for (int n = Math.Min(nodes, 50_000); ; n = Math.Min(nodes, n + 50_000))
            {
                await load.GrowAsync(n);
                Console.WriteLine($"{name}: {n:N0} nodes loaded after {clock.Elapsed.TotalSeconds:F0} s, RSS {server.ResidentBytes().Current >> 20} MiB");
                if (n == nodes) break;
            }
            loadSeconds = clock.Elapsed.TotalSeconds;
        }
        long resident = server.ResidentBytes().Current;

        using (var resources = new ResourceClientSet(server.Endpoint))
        {
            clock.Restart();
            foreach (var client in resources.All) listed += await client.ListAsync(10_000, new CallRecorder());
            listSeconds = clock.Elapsed.TotalSeconds;
        }
        int expected = nodes * (2 + shape.PodsPerNode);
        if (listed != expected) throw new InvalidOperationException($"{name}: listed {listed} objects, expected {expected}");
        Console.WriteLine($"{name}: listed {listed:N0} objects in {listSeconds:F1} s; RSS {resident >> 20} MiB");

        // Ready: the first linearizable read that finds the last node written.
        var lastKey = ByteString.CopyFromUtf8(ClusterShape.NodeKey(nodes - 1));
        clock.Restart();
        var restarted = await restart(server);
        await Poll.UntilAsync(async () =>
        {
            try
            {
                return (await restarted.Kv.RangeAsync(new RangeRequest { Key = lastKey }, deadline: DateTime.UtcNow.AddSeconds(5))).Kvs.Count;
            }
            catch (RpcException)
            {
                return 0;
            }
        }, found => found == 1, TimeSpan.FromMinutes(10), $"{name} ready after restart");
        double restartSeconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"{name}: ready {restartSeconds:F1} s after kill -9");
        long live = shape.StandingBytes(nodes);
        return new Figures(loadSeconds, live, resident, listSeconds, restartSeconds, restarted.ResidentBytes().Current);
    }

    /// <summary>A client per resource on one store, for listing all of them.</summary>
    private sealed class ResourceClientSet(string endpoint) : IDisposable
    {
        public IReadOnlyList<ResourceClient> All { get; } = [.. Enum.GetValues<Resource>().Select(r => new ResourceClient(endpoint, r, new AckTimes()))];

        public void Dispose()
        {
            foreach (var c in All) c.Dispose();
        }
    }
}
