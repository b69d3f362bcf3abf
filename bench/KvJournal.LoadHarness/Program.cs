using KvJournal.LoadHarness;

// Usage: dotnet run -c Release --project bench/KvJournal.LoadHarness -- watch|lease|lease-streams|defrag|shards|snapshot|compaction|failover|list|cluster|keyspace [--name N ...] (see bench/README.md)
var command = args.Length > 0 ? args[0] : "";
// The list benchmark's writer, started by the harness itself as a separate process.
if (command == "list-writer") return await ListWhileWritingBenchmark.RunWriterAsync(args[1]);
var options = HarnessArgs.Parse(args.Skip(1).ToArray());
switch (command)
{
    case "watch":
        await WatchBenchmark.RunAsync(options);
        return 0;
    case "lease":
        await LeaseKeepAliveBenchmark.RunAsync(options);
        return 0;
    case "lease-streams":
        await LeaseKeepAliveBenchmark.RunStreamsClientAsync(options);
        return 0;
    case "defrag":
        await DefragBenchmark.RunAsync(options);
        return 0;
    case "shards":
        await ShardFloodBenchmark.RunAsync(options);
        return 0;
    case "compaction":
        await CompactionBenchmark.RunAsync(options);
        return 0;
    case "snapshot":
        await SnapshotBenchmark.RunAsync(options);
        return 0;
    case "failover":
        await FailoverBenchmark.RunAsync(options);
        return 0;
    case "list":
        await ListWhileWritingBenchmark.RunAsync(options);
        return 0;
    case "cluster":
        await KvJournal.LoadHarness.Cluster.ClusterBenchmark.RunAsync(options);
        return 0;
    case "keyspace":
        await KvJournal.LoadHarness.Cluster.KeyspaceBenchmark.RunAsync(options);
        return 0;
    default:
        Console.Error.WriteLine("usage: KvJournal.LoadHarness watch [--watchers 50000] [--fanout 1000] [--events 2000]");
        Console.Error.WriteLine("       KvJournal.LoadHarness lease [--clients 1000] [--seconds 5]");
        Console.Error.WriteLine("       KvJournal.LoadHarness lease-streams --port N [--streams 10] [--leases 1000] [--seconds 5]   (a client only: bench/compare.sh)");
        Console.Error.WriteLine("       KvJournal.LoadHarness defrag [--keys 50000] [--seconds 4]");
        Console.Error.WriteLine("       KvJournal.LoadHarness shards [--quota-mib 16] [--seconds 5]");
        Console.Error.WriteLine("       KvJournal.LoadHarness snapshot [--keys 1000000] [--seconds 20]");
        Console.Error.WriteLine("       KvJournal.LoadHarness compaction [--keys 1000000] [--seconds 10]");
        Console.Error.WriteLine("       KvJournal.LoadHarness failover [--runs 3] [--writers 12]");
        Console.Error.WriteLine("       KvJournal.LoadHarness list [--objects 100000] [--lists 3]");
        Console.Error.WriteLine("       KvJournal.LoadHarness keyspace [--mib 8192] [--pods-per-node 1]");
        Console.Error.WriteLine("       KvJournal.LoadHarness cluster [--nodes-from 5000] [--nodes-to 100000] [--seconds 60] [--setups 7] [--flood-nodes 5000] ... (bench/README.md)");
        return 2;
}
