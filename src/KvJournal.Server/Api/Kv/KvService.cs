using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Kv;

/// <summary>etcd's KV service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(KvService), nameof(BindService))]
public sealed class KvService(ShardRouter router, ServerOptions options) : KV.KVBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, KV.KVBase? service) =>
        KV.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<RangeResponse> Range(RangeRequest request, ServerCallContext context) =>
        router.For(context).RangeAsync(request, Who(context), context.CancellationToken);

    public override Task<PutResponse> Put(PutRequest request, ServerCallContext context) =>
        router.For(context).PutAsync(request, Who(context), context.CancellationToken);

    public override Task<DeleteRangeResponse> DeleteRange(DeleteRangeRequest request, ServerCallContext context) =>
        router.For(context).DeleteRangeAsync(request, Who(context), context.CancellationToken);

    public override Task<TxnResponse> Txn(TxnRequest request, ServerCallContext context) =>
        router.For(context).TxnAsync(request, Who(context), context.CancellationToken);

    public override Task<CompactionResponse> Compact(CompactionRequest request, ServerCallContext context) =>
        router.For(context).CompactAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
