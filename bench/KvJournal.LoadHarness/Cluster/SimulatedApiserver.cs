using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// One kube-apiserver's view of the store: a client and an informer per resource, the event
/// lease manager, and a compactor per store it talks to (one per transport, as the apiserver has).
/// </summary>
public sealed class SimulatedApiserver : IAsyncDisposable
{
    private readonly Dictionary<Resource, ResourceClient> _clients = [];
    private readonly List<Informer> _informers = [];
    private readonly Func<CallRecorder> _recorder;
    private readonly SemaphoreSlim _leaseLock = new(1, 1);
    private long _eventLease;
    private long _eventLeaseGranted;
    private int _eventLeaseObjects;

    public SimulatedApiserver(int index, ClusterEndpoints endpoints, IReadOnlyDictionary<string, AckTimes> acks, Func<CallRecorder> recorder)
    {
        Index = index;
        _recorder = recorder;
        foreach (var resource in Enum.GetValues<Resource>())
            _clients[resource] = new ResourceClient(endpoints.For(resource), resource, acks[endpoints.For(resource)]);
        Endpoints = endpoints;
    }

    public int Index { get; }
    public ClusterEndpoints Endpoints { get; }

    public ResourceClient this[Resource resource] => _clients[resource];

    public async Task StartInformersAsync()
    {
        foreach (var client in _clients.Values)
        {
            var informer = new Informer(client, Index, _recorder);
            await informer.StartAsync();
            _informers.Add(informer);
        }
    }

    /// <summary>
    /// The lease events are attached to: one is reused while it is under 60 s old and holds fewer
    /// than 1,000 objects, else a new one is granted with TTL 3,660 s (the apiserver's lease manager).
    /// </summary>
    public async Task<long> EventLeaseAsync()
    {
        await _leaseLock.WaitAsync();
        try
        {
            if (_eventLease == 0 || Stopwatch.GetElapsedTime(_eventLeaseGranted) > TimeSpan.FromSeconds(60) || _eventLeaseObjects >= 1000)
            {
                long start = Stopwatch.GetTimestamp();
                _eventLease = (await _clients[Resource.Events].Leases.LeaseGrantAsync(new LeaseGrantRequest { TTL = ClusterShape.EventLeaseTtl })).ID;
                _recorder().Record("lease grant", start);
                _eventLeaseGranted = Stopwatch.GetTimestamp();
                _eventLeaseObjects = 0;
            }
            _eventLeaseObjects++;
            return _eventLease;
        }
        finally
        {
            _leaseLock.Release();
        }
    }

    /// <summary>
    /// The compactor of one store, every <paramref name="interval"/>: the compact_rev_key CAS on
    /// its version, and on success Compact(the revision seen one round before); a lost CAS adopts
    /// the winner's version. Runs until <paramref name="stop"/>.
    /// </summary>
    public async Task CompactAsync(string endpoint, TimeSpan interval, CancellationToken stop)
    {
        var kv = _clients.Values.First(c => Endpoints.For(c.Resource) == endpoint).Kv;
        var key = ByteString.CopyFromUtf8("compact_rev_key");
        long version = 0, previous = 0;
        using var timer = new PeriodicTimer(interval);
        try
        {
            do
            {
                long start = Stopwatch.GetTimestamp();
                try
                {
                    var txn = new TxnRequest();
                    txn.Compare.Add(new Compare { Key = key, Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = version });
                    txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = key, Value = ByteString.CopyFromUtf8(previous.ToString(System.Globalization.CultureInfo.InvariantCulture)) } });
                    txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = key } });
                    var response = await kv.TxnAsync(txn, cancellationToken: stop);
                    if (response.Succeeded)
                    {
                        version++;
                        if (previous != 0)
                        {
                            try
                            {
                                await kv.CompactAsync(new CompactionRequest { Revision = previous }, cancellationToken: stop);
                            }
                            catch (RpcException ex) when (ex.Status.Detail.Contains("compacted", StringComparison.Ordinal))
                            {
                            }
                            _recorder().Record("compact", start);
                        }
                    }
                    else
                    {
                        version = response.Responses[0].ResponseRange.Kvs[0].Version;
                    }
                    previous = response.Header.Revision;
                }
                catch (RpcException ex) when (!stop.IsCancellationRequested)
                {
                    _recorder().Error("compact", ex);
                }
            }
            while (await timer.WaitForNextTickAsync(stop));
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (RpcException) when (stop.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var informer in _informers) await informer.DisposeAsync();
        foreach (var client in _clients.Values) client.Dispose();
        _leaseLock.Dispose();
    }
}
