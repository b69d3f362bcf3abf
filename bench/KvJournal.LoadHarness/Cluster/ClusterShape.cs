using Google.Protobuf;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// What N simulated nodes ask of their store, as kube-apiserver's storage calls: rates, object
/// sizes and where each resource's keys live (../shared/reference/kube-apiserver-etcd-usage.md).
/// </summary>
public sealed record ClusterShape(
    int LeaseRenewSeconds,
    int StatusSeconds,
    int EventsPerNodeHour,
    int PodStartsPerSecondPer1000Nodes,
    int PodsPerNode,
    int ListSeconds,
    int CompactSeconds)
{
    /// <summary>kube-apiservers sharing the store; each has its own clients, informers and compactor.</summary>
    public const int Apiservers = 3;

    public const int LeaseBytes = 300;
    public const int NodeBytes = 10 * 1024;
    public const int EventBytes = 1024;
    public const int PodBytes = 4 * 1024;

    /// <summary>Events' TTL as the apiserver grants it: --event-ttl 1 h plus the 60 s lease reuse.</summary>
    public const long EventLeaseTtl = 3660;

    public static ClusterShape From(HarnessArgs args) => new(
        args.Get("lease-seconds", 10),
        args.Get("status-seconds", 60),
        args.Get("events-per-node-hour", 36),
        args.Get("pod-starts-per-1000-nodes", 1),
        args.Get("pods-per-node", 1),
        args.Get("list-seconds", 30),
        args.Get("compact-seconds", 300));

    public double LeaseRenewalsPerSecond(int nodes) => (double)nodes / LeaseRenewSeconds;

    public double StatusUpdatesPerSecond(int nodes) => (double)nodes / StatusSeconds;

    public double EventsPerSecond(int nodes) => nodes * (double)EventsPerNodeHour / 3600;

    public double PodStartsPerSecond(int nodes) => nodes * (double)PodStartsPerSecondPer1000Nodes / 1000;

    /// <summary>Bytes of values the store must hold at <paramref name="nodes"/> nodes before events and churn.</summary>
    public long StandingBytes(int nodes) => nodes * (long)(LeaseBytes + NodeBytes + PodsPerNode * PodBytes);

    public static string NodeLeaseKey(int node) => $"/registry/leases/kube-node-lease/node-{node:D6}";

    public static string NodeKey(int node) => $"/registry/minions/node-{node:D6}";

    public static string PodKey(long pod) => $"/registry/pods/ns-{pod % 100:D2}/pod-{pod:D8}";

    public static string EventKey(int apiserver, long n) => $"/registry/events/ns-{n % 100:D2}/ev-{apiserver}-{n:D9}";
}

/// <summary>One of the resources the load writes; each has its own clients and informer per apiserver.</summary>
public enum Resource
{
    Leases,
    Nodes,
    Events,
    Pods,
}

/// <summary>
/// Where each resource is stored: the main store (nodes, pods, compact_rev_key) and the events and
/// leases stores, as kube-apiserver's --etcd-servers-overrides names them. One store for
/// everything has the same endpoint three times.
/// </summary>
public sealed record ClusterEndpoints(string Main, string Events, string Leases)
{
    public string For(Resource resource) => resource switch
    {
        Resource.Leases => Leases,
        Resource.Events => Events,
        _ => Main,
    };

    /// <summary>The distinct stores: each has its own revisions and its own compactor.</summary>
    public IReadOnlyList<string> Distinct => new[] { Main, Events, Leases }.Distinct().ToArray();

    public static string Prefix(Resource resource) => resource switch
    {
        Resource.Leases => "/registry/leases/",
        Resource.Nodes => "/registry/minions/",
        Resource.Events => "/registry/events/",
        _ => "/registry/pods/",
    };

    /// <summary>The range end of a resource's prefix (its last "/" plus one), as clientv3's WithPrefix makes it.</summary>
    public static ByteString PrefixEnd(Resource resource) => ByteString.CopyFromUtf8(Prefix(resource)[..^1] + "0");
}
