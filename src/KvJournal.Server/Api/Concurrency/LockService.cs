using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using V3lockpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>etcd's v3lock service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(LockService), nameof(BindService))]
public sealed class LockService(ShardRouter router, ServerOptions options) : V3lockpb.Lock.LockBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, V3lockpb.Lock.LockBase? service) =>
        V3lockpb.Lock.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<LockResponse> Lock(LockRequest request, ServerCallContext context) =>
        router.For(context).LockAsync(request, Who(context), context.CancellationToken);

    public override Task<UnlockResponse> Unlock(UnlockRequest request, ServerCallContext context) =>
        router.For(context).UnlockAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
