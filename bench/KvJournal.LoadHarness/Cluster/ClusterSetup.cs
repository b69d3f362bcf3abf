using KvJournal.Testing;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// One store setup under the cluster load, its processes started on loopback with data under
/// the temporary directory (the same disk for all) and stopped by PID on dispose: kvjournal with
/// events and leases on their own shards in one process, one etcd holding everything, or three
/// etcds (main, events, leases) as big clusters partition it. All write with fsync.
/// </summary>
public sealed class ClusterSetup : IAsyncDisposable
{
    public const string KvJournal = "kvjournal, 3 shards in 1 process";
    public const string Etcd = "etcd, 1 process";
    public const string PartitionedEtcd = "etcd, 3 partitions";

    private readonly IReadOnlyList<ServerProcess> _processes;

    private ClusterSetup(string name, ClusterEndpoints endpoints, IReadOnlyList<ServerProcess> processes)
    {
        Name = name;
        Endpoints = endpoints;
        _processes = processes;
    }

    public string Name { get; }
    public ClusterEndpoints Endpoints { get; }

    /// <summary>CPU time all of the setup's processes have used so far.</summary>
    public TimeSpan CpuTime => TimeSpan.FromTicks(_processes.Sum(p => p.CpuTime().Ticks));

    /// <summary>Resident memory of all its processes together, now and the sum of their peaks.</summary>
    public (long Current, long Peak) Resident => (_processes.Sum(p => p.ResidentBytes().Current), _processes.Sum(p => p.ResidentBytes().Peak));

    /// <summary>
    /// Starts <paramref name="name"/> with <paramref name="quota"/> bytes for each store, or with
    /// <paramref name="eventsQuota"/> for the one holding events (in one etcd: for everything).
    /// </summary>
    public static async Task<ClusterSetup> StartAsync(string name, long quota, long? eventsQuota = null)
    {
        switch (name)
        {
            case KvJournal:
                {
                    int events = Ports.Free(), leases = Ports.Free();
                    var server = await KvJournalProcess.StartAsync(null,
                        "--shard", $"events=http://127.0.0.1:{events}", "--shard", $"leases=http://127.0.0.1:{leases}",
                        "--quota-backend-bytes", $"{quota}", "--shard-quota-backend-bytes", $"events={eventsQuota ?? quota}");
                    return new ClusterSetup(name, new ClusterEndpoints(server.Endpoint, $"127.0.0.1:{events}", $"127.0.0.1:{leases}"), [server]);
                }
            case Etcd:
                {
                    var server = await ReferenceEtcdProcess.StartAsync(fsync: true, "--quota-backend-bytes", $"{eventsQuota ?? quota}");
                    return new ClusterSetup(name, new ClusterEndpoints(server.Endpoint, server.Endpoint, server.Endpoint), [server]);
                }
            case PartitionedEtcd:
                {
                    var main = await ReferenceEtcdProcess.StartAsync(fsync: true, "--quota-backend-bytes", $"{quota}");
                    var events = await ReferenceEtcdProcess.StartAsync(fsync: true, "--quota-backend-bytes", $"{eventsQuota ?? quota}");
                    var leases = await ReferenceEtcdProcess.StartAsync(fsync: true, "--quota-backend-bytes", $"{quota}");
                    return new ClusterSetup(name, new ClusterEndpoints(main.Endpoint, events.Endpoint, leases.Endpoint), [main, events, leases]);
                }
            default:
                throw new ArgumentException($"no setup {name}");
        }
    }

    /// <summary>Stops the processes; what each logged is kept in the temporary directory (printed) for a look afterwards.</summary>
    public async ValueTask DisposeAsync()
    {
        for (int i = 0; i < _processes.Count; i++)
        {
            string log = Path.Combine(Path.GetTempPath(), $"cluster-{new string([.. Name.Where(char.IsLetterOrDigit)])}-{i}-{_processes[i].Pid}.log");
            await File.WriteAllTextAsync(log, _processes[i].Output);
            Console.WriteLine($"{Name}: server output in {log}");
            await _processes[i].DisposeAsync();
        }
    }
}
