using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Cluster;

/// <summary>etcd's Cluster service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(ClusterService), nameof(BindService))]
public sealed class ClusterService(ShardRouter router, ServerOptions options) : Etcdserverpb.Cluster.ClusterBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Cluster.ClusterBase? service) =>
        Etcdserverpb.Cluster.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<MemberListResponse> MemberList(MemberListRequest request, ServerCallContext context) =>
        router.For(context).MemberListAsync(request, CallerIdentities.Of(context, router.For(context), options.ClientCertAuth), context.CancellationToken);

    public override Task<MemberAddResponse> MemberAdd(MemberAddRequest request, ServerCallContext context) => throw ShardServer.MembershipChange();

    public override Task<MemberRemoveResponse> MemberRemove(MemberRemoveRequest request, ServerCallContext context) => throw ShardServer.MembershipChange();

    public override Task<MemberUpdateResponse> MemberUpdate(MemberUpdateRequest request, ServerCallContext context) => throw ShardServer.MembershipChange();

    public override Task<MemberPromoteResponse> MemberPromote(MemberPromoteRequest request, ServerCallContext context) => throw ShardServer.MembershipChange();
}
