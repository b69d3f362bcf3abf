using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>What one measured window at N nodes gave.</summary>
public sealed record StepResult(
    int Nodes,
    double Seconds,
    IReadOnlyList<CallSummary> Calls,
    IReadOnlyList<CallSummary> Informers,
    int Errors,
    double LaggiestInformerP99,
    double LaggiestInformerMax,
    double HarnessBehindShare,
    int FullLists,
    double FullListSeconds,
    (long Accepted, long Refused) Flood);

/// <summary>
/// The load of N simulated nodes on one store setup, from three apiservers: node lease renewals
/// and node status updates (GuaranteedUpdate), event creates on a shared lease, pod churn
/// (create, 5 updates, delete), informers with progress requests, a paged LIST of all pods, and
/// compaction through compact_rev_key. Calls are sent open-loop at their rates; each latency runs
/// from the time the call was due, so a store that falls behind shows it. Nodes are added with
/// <see cref="GrowAsync"/>; informers and compactors run from <see cref="StartAsync"/> to dispose.
/// </summary>
public sealed class ClusterLoad : IAsyncDisposable
{
    /// <summary>Calls in flight at most; a call due beyond it waits (and its latency shows the wait).</summary>
    private const int MaxInFlight = 20_000;

    private static readonly ByteString LeaseValue = Value(ClusterShape.LeaseBytes);
    private static readonly ByteString NodeValue = Value(ClusterShape.NodeBytes);
    private static readonly ByteString EventValue = Value(ClusterShape.EventBytes);
    private static readonly ByteString PodValue = Value(ClusterShape.PodBytes);
    private static readonly ByteString FloodValue = Value(64 * 1024);

    private readonly ClusterShape _shape;
    private readonly SimulatedApiserver[] _apiservers;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _compactors = [];
    private CallRecorder _recorder = new();
    private long[] _leaseRevisions = [];
    private long[] _nodeRevisions = [];
    private int _nodes;
    private long _podStarts;
    private long _events;
    private int _inFlight;

    public ClusterLoad(ClusterEndpoints endpoints, ClusterShape shape)
    {
        _shape = shape;
        var acks = endpoints.Distinct.ToDictionary(e => e, _ => new AckTimes());
        _apiservers = [.. Enumerable.Range(0, ClusterShape.Apiservers).Select(a => new SimulatedApiserver(a, endpoints, acks, () => Volatile.Read(ref _recorder)))];
    }

    /// <summary>Bytes of live values now: the standing objects and the events (alive for an hour).</summary>
    public long LiveBytes => _shape.StandingBytes(_nodes) + Interlocked.Read(ref _events) * ClusterShape.EventBytes;

    public async Task StartAsync()
    {
        foreach (var apiserver in _apiservers) await apiserver.StartInformersAsync();
        foreach (var apiserver in _apiservers)
            foreach (var endpoint in apiserver.Endpoints.Distinct)
                _compactors.Add(Task.Run(() => apiserver.CompactAsync(endpoint, TimeSpan.FromSeconds(_shape.CompactSeconds), _stop.Token)));
    }

    /// <summary>Creates the node leases, nodes and standing pods of nodes up to <paramref name="nodes"/>, 50 objects per Txn.</summary>
    public async Task GrowAsync(int nodes)
    {
        if (nodes <= _nodes) return;
        Array.Resize(ref _leaseRevisions, nodes);
        Array.Resize(ref _nodeRevisions, nodes);
        int from = _nodes;
        var loader = _apiservers[0];
        await Parallel.ForAsync(0, (nodes - from + 49) / 50, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (batch, _) =>
        {
            int first = from + batch * 50, last = Math.Min(nodes, first + 50);
            var range = Enumerable.Range(first, last - first);
            long leases = await loader[Resource.Leases].LoadAsync(range.Select(ClusterShape.NodeLeaseKey), LeaseValue);
            long statuses = await loader[Resource.Nodes].LoadAsync(range.Select(ClusterShape.NodeKey), NodeValue);
            for (int n = first; n < last; n++) (_leaseRevisions[n], _nodeRevisions[n]) = (leases, statuses);
            if (_shape.PodsPerNode > 0)
                await loader[Resource.Pods].LoadAsync(Enumerable.Range(first * _shape.PodsPerNode, (last - first) * _shape.PodsPerNode).Select(p => ClusterShape.PodKey(p)), PodValue);
        });
        _nodes = nodes;
    }

    /// <summary>
    /// One measured window of <paramref name="length"/> at the current node count. With
    /// <paramref name="flood"/> eight clients also create 64 KiB events as fast as the store takes
    /// them, past the events store's quota.
    /// </summary>
    public async Task<StepResult> RunAsync(TimeSpan length, bool flood = false)
    {
        var recorder = new CallRecorder();
        Volatile.Write(ref _recorder, recorder);
        int nodes = _nodes;
        var clock = Stopwatch.StartNew();
        long due = 0, launched = 0;
        long floodAccepted = 0, floodRefused = 0;
        int fullLists = 0;
        double listSeconds = 0;

        long begin = Stopwatch.GetTimestamp();

        // Call n is due at begin + (n + 1) / perSecond; it is passed that time, its latency's start.
        async Task Pace(double perSecond, Func<long, long, Task> call)
        {
            if (perSecond <= 0) return;
            long sent = 0;
            while (clock.Elapsed < length)
            {
                long target = (long)(clock.Elapsed.TotalSeconds * perSecond);
                for (; sent < target && Volatile.Read(ref _inFlight) < MaxInFlight; sent++)
                    _ = Launch(call, sent, begin + (long)((sent + 1) / perSecond * Stopwatch.Frequency));
                await Task.Delay(1); // about a millisecond on Linux: the most a call waits for its turn
            }
            Interlocked.Add(ref due, (long)(length.TotalSeconds * perSecond));
            Interlocked.Add(ref launched, sent);
        }

        async Task Launch(Func<long, long, Task> call, long n, long dueTimestamp)
        {
            Interlocked.Increment(ref _inFlight);
            try
            {
                await call(n, dueTimestamp);
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        }

        async Task ListPods()
        {
            var first = TimeSpan.FromSeconds(Math.Min(5, length.TotalSeconds / 2));
            for (var at = first; at < length; at += TimeSpan.FromSeconds(_shape.ListSeconds))
            {
                if (at > clock.Elapsed) await Task.Delay(at - clock.Elapsed);
                var pods = _apiservers[fullLists % ClusterShape.Apiservers][Resource.Pods];
                long start = Stopwatch.GetTimestamp();
                try
                {
                    await pods.ListAsync(500, recorder);
                    listSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
                    fullLists++;
                }
                catch (RpcException ex)
                {
                    recorder.Error("list page", ex);
                }
            }
        }

        async Task Flood(int flooder)
        {
            var events = _apiservers[flooder % ClusterShape.Apiservers][Resource.Events];
            for (long i = 0; clock.Elapsed < length; i++)
            {
                try
                {
                    await events.CreateAsync($"/registry/events/flood/ev-{flooder}-{i:D9}", FloodValue);
                    Interlocked.Increment(ref floodAccepted);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted)
                {
                    Interlocked.Increment(ref floodRefused);
                    await Task.Delay(10); // a refused client backs off a little, as client-go does
                }
            }
        }

        var load = new List<Task>
        {
            Pace(_shape.LeaseRenewalsPerSecond(nodes), (n, start) => Call("node lease renew", start, () => RenewLeaseAsync((int)(n % nodes)))),
            Pace(_shape.StatusUpdatesPerSecond(nodes), (n, start) => Call("node status update", start, () => UpdateStatusAsync((int)(n % nodes)))),
            Pace(_shape.EventsPerSecond(nodes), (n, start) => Call("event create", start, CreateEventAsync)),
            Pace(_shape.PodStartsPerSecond(nodes), (n, start) => PodLifecycleAsync(start)),
            ListPods(),
        };
        if (flood) load.AddRange(Enumerable.Range(0, 8).Select(f => Task.Run(() => Flood(f))));
        await Task.WhenAll(load);
        var drain = Stopwatch.StartNew();
        while (Volatile.Read(ref _inFlight) > 0 && drain.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(10);
        double seconds = clock.Elapsed.TotalSeconds;

        var calls = recorder.Summaries();
        var lags = calls.Where(c => c.Call.StartsWith("lag ", StringComparison.Ordinal)).ToList();
        return new StepResult(nodes, seconds, [.. calls.Where(c => !c.Call.StartsWith("lag ", StringComparison.Ordinal))], lags, recorder.TotalErrors,
            lags.Count == 0 ? 0 : lags.Max(l => l.P99), lags.Count == 0 ? 0 : lags.Max(l => l.Max),
            due == 0 ? 0 : 1 - (double)launched / due, fullLists, fullLists == 0 ? 0 : listSeconds / fullLists, (floodAccepted, floodRefused));
    }

    private async Task Call(string name, long start, Func<Task> call)
    {
        var recorder = Volatile.Read(ref _recorder);
        try
        {
            await call();
            recorder.Record(name, start);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            recorder.Error(name, ex);
        }
    }

    private SimulatedApiserver ApiserverOf(long n) => _apiservers[n % ClusterShape.Apiservers];

    private async Task RenewLeaseAsync(int node) =>
        _leaseRevisions[node] = await ApiserverOf(node)[Resource.Leases].UpdateAsync(ClusterShape.NodeLeaseKey(node), LeaseValue, _leaseRevisions[node]);

    private async Task UpdateStatusAsync(int node) =>
        _nodeRevisions[node] = await ApiserverOf(node)[Resource.Nodes].UpdateAsync(ClusterShape.NodeKey(node), NodeValue, _nodeRevisions[node]);

    private async Task CreateEventAsync()
    {
        long n = Interlocked.Increment(ref _events);
        var apiserver = ApiserverOf(n);
        long lease = await apiserver.EventLeaseAsync();
        await apiserver[Resource.Events].CreateAsync(ClusterShape.EventKey(apiserver.Index, n), EventValue, lease);
    }

    // A pod's life as its store sees it: created, its status updated 5 times (scheduling, kubelet), deleted.
    private async Task PodLifecycleAsync(long start)
    {
        long pod = 50_000_000 + Interlocked.Increment(ref _podStarts);
        var pods = ApiserverOf(pod)[Resource.Pods];
        string key = ClusterShape.PodKey(pod);
        long revision = 0;
        await Call("pod create", start, async () => revision = await pods.CreateAsync(key, PodValue));
        if (revision == 0) return;
        for (int i = 0; i < 5; i++)
            await Call("pod update", Stopwatch.GetTimestamp(), async () => revision = await pods.UpdateAsync(key, PodValue, revision));
        await Call("pod delete", Stopwatch.GetTimestamp(), () => pods.DeleteAsync(key, revision));
    }

    private static ByteString Value(int size)
    {
        var bytes = new byte[size];
        new Random(size).NextBytes(bytes);
        return ByteString.CopyFrom(bytes);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_compactors);
        foreach (var apiserver in _apiservers) await apiserver.DisposeAsync();
        _stop.Dispose();
    }
}
