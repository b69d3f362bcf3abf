using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// One apiserver's client for one resource (kube-apiserver opens one per resource storage): its
/// own connection, and the store calls in the shapes the apiserver's etcd3 storage sends.
/// </summary>
public sealed class ResourceClient : IDisposable
{
    private static readonly Metadata RequireLeader = new() { { "hasleader", "true" } };
    private readonly GrpcChannel _channel;

    public ResourceClient(string endpoint, Resource resource, AckTimes acks)
    {
        _channel = GrpcChannel.ForAddress($"http://{endpoint}", new GrpcChannelOptions { MaxReceiveMessageSize = null, MaxSendMessageSize = null });
        Kv = new KV.KVClient(_channel);
        Leases = new Lease.LeaseClient(_channel);
        Watches = new Watch.WatchClient(_channel);
        Resource = resource;
        Acks = acks;
    }

    public Resource Resource { get; }
    public KV.KVClient Kv { get; }
    public Lease.LeaseClient Leases { get; }
    public Watch.WatchClient Watches { get; }

    /// <summary>When each revision of this client's store was acknowledged.</summary>
    public AckTimes Acks { get; }

    public AsyncDuplexStreamingCall<WatchRequest, WatchResponse> OpenWatch(CancellationToken cancel) => Watches.Watch(RequireLeader, cancellationToken: cancel);

    /// <summary>Create: Txn{mod_revision(key) == 0 → Put}. Returns the object's revision.</summary>
    public async Task<long> CreateAsync(string key, ByteString value, long lease = 0)
    {
        var k = ByteString.CopyFromUtf8(key);
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = k, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = k, Value = value, Lease = lease } });
        var response = await Kv.TxnAsync(txn);
        if (!response.Succeeded) throw new InvalidOperationException($"{key} already exists");
        Acks.Acknowledged(response.Header.Revision);
        return response.Header.Revision;
    }

    /// <summary>
    /// GuaranteedUpdate: Txn{mod_revision(key) == expected → Put, else Range(key)}; on a stale
    /// revision it retries with the one the failure branch read, as the apiserver does. Returns the
    /// object's new revision.
    /// </summary>
    public async Task<long> UpdateAsync(string key, ByteString value, long expected)
    {
        var k = ByteString.CopyFromUtf8(key);
        for (int attempt = 0; ; attempt++)
        {
            var txn = new TxnRequest();
            txn.Compare.Add(new Compare { Key = k, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = expected });
            txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = k, Value = value } });
            txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = k } });
            var response = await Kv.TxnAsync(txn);
            if (response.Succeeded)
            {
                Acks.Acknowledged(response.Header.Revision);
                return response.Header.Revision;
            }
            var current = response.Responses[0].ResponseRange.Kvs;
            if (current.Count == 0 || attempt == 3) throw new InvalidOperationException($"update of {key} conflicted {attempt + 1} times");
            expected = current[0].ModRevision;
        }
    }

    /// <summary>Delete: Txn{mod_revision(key) == expected → DeleteRange, else Range(key)}.</summary>
    public async Task DeleteAsync(string key, long expected)
    {
        var k = ByteString.CopyFromUtf8(key);
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = k, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = expected });
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = k } });
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = k } });
        var response = await Kv.TxnAsync(txn);
        if (!response.Succeeded) throw new InvalidOperationException($"delete of {key} found revision {response.Responses[0].ResponseRange.Kvs.FirstOrDefault()?.ModRevision}");
        Acks.Acknowledged(response.Header.Revision);
    }

    /// <summary>Bulk load of objects that do not exist yet, 50 per Txn. Returns the revision they were written at.</summary>
    public async Task<long> LoadAsync(IEnumerable<string> keys, ByteString value)
    {
        var txn = new TxnRequest();
        foreach (var key in keys) txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = value } });
        return (await Kv.TxnAsync(txn)).Header.Revision;
    }

    /// <summary>The apiserver's paged LIST of this resource, each page's latency recorded; returns the objects listed.</summary>
    public Task<int> ListAsync(int limit, CallRecorder recorder) =>
        PagedList.CountAsync(Kv, ByteString.CopyFromUtf8(ClusterEndpoints.Prefix(Resource)), ClusterEndpoints.PrefixEnd(Resource), limit,
            start => recorder.Record("list page", start));

    /// <summary>GetCurrentResourceVersion: a LIST with limit 1; the header's revision.</summary>
    public async Task<long> CurrentRevisionAsync()
    {
        var page = await Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(ClusterEndpoints.Prefix(Resource)), RangeEnd = ClusterEndpoints.PrefixEnd(Resource), Limit = 1 });
        return page.Header.Revision;
    }

    public void Dispose() => _channel.Dispose();
}
