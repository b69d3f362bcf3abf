using Etcdserverpb;
using KvJournal.Journal.Nats;
using KvJournal.Testing;

namespace KvJournal.LoadHarness;

/// <summary>
/// The longest time without an acknowledged write after kill -9 of the one process a cluster
/// elects: etcd's leader in a 3-member etcd cluster, and the journal stream's leader among 3
/// nats-server nodes under 3 kvjournal members. Writers (--writers) put through every member,
/// moving to the next member when a write fails, as a client given all endpoints does. Each
/// --runs times, on a fresh cluster; loopback only, every wait bounded.
/// </summary>
public static class FailoverBenchmark
{
    public static async Task RunAsync(HarnessArgs args)
    {
        int runs = args.Get("runs", 3);
        int writers = args.Get("writers", 12);
        Console.WriteLine($"failover benchmark: {runs} runs each, {writers} writers over 3 members, kill -9 of the leader after 500 acknowledged writes");
        Console.WriteLine();
        Console.WriteLine("| run | etcd 3.5, 3 members: longest gap (s) | kvjournal, 3 members on 3 NATS nodes: longest gap (s) |");
        Console.WriteLine("|---:|---:|---:|");
        var etcd = new List<double>();
        var kvj = new List<double>();
        for (int run = 1; run <= runs; run++)
        {
            etcd.Add(await EtcdAsync(writers));
            kvj.Add(await KvJournalAsync(writers));
            Console.WriteLine($"| {run} | {etcd[^1]:F2} | {kvj[^1]:F2} |");
        }
        etcd.Sort();
        kvj.Sort();
        Console.WriteLine($"| median | {etcd[runs / 2]:F2} | {kvj[runs / 2]:F2} |");
    }

    private static async Task<double> EtcdAsync(int writers)
    {
        var members = await ReferenceEtcdProcess.StartClusterAsync(3, fsync: true);
        try
        {
            var status = await new Maintenance.MaintenanceClient(members[0].Channel).StatusAsync(new StatusRequest());
            ServerProcess? leader = null;
            foreach (var m in members)
                if ((await new Maintenance.MaintenanceClient(m.Channel).StatusAsync(new StatusRequest())).Header.MemberId == status.Leader) leader = m;
            return await GapAsync(members, writers, () => leader!.KillAsync());
        }
        finally
        {
            foreach (var m in members) await m.DisposeAsync();
        }
    }

    private static async Task<double> KvJournalAsync(int writers)
    {
        await using var nats = await NatsCluster.StartAsync();
        var members = new List<KvJournalProcess>();
        try
        {
            for (int i = 0; i < 3; i++) members.Add(await KvJournalProcess.StartAsync(null, "--name", $"m{i}", "--journal-endpoints", nats.Endpoints));
            return await GapAsync(members, writers, async () =>
            {
                var leader = await nats.StreamLeaderAsync(NatsJournal.StreamName("default")) ?? throw new InvalidOperationException("no stream leader");
                await nats.KillAsync(leader);
            });
        }
        finally
        {
            foreach (var m in members) await m.DisposeAsync();
        }
    }

    // Warm up, kill, then the longest time without an acknowledgement from the kill until 500 more came.
    private static async Task<double> GapAsync(IReadOnlyList<ServerProcess> members, int writers, Func<Task> kill)
    {
        await using var load = new WriteLoad(members, "failover/", failOver: true);
        load.Start(writers);
        await load.WaitForAcksAsync(500, TimeSpan.FromSeconds(60));
        var at = load.Now;
        await kill();
        await load.WaitForAcksAsync(500, TimeSpan.FromSeconds(60));
        return load.LongestGapAfter(at).TotalSeconds;
    }
}
