using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using V3electionpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>etcd's v3election service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(ElectionService), nameof(BindService))]
public sealed class ElectionService(ShardRouter router, ServerOptions options) : Election.ElectionBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Election.ElectionBase? service) =>
        Election.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<CampaignResponse> Campaign(CampaignRequest request, ServerCallContext context) =>
        router.For(context).CampaignAsync(request, Who(context), context.CancellationToken);

    public override Task<ProclaimResponse> Proclaim(ProclaimRequest request, ServerCallContext context) =>
        router.For(context).ProclaimAsync(request, Who(context), context.CancellationToken);

    public override Task<ResignResponse> Resign(ResignRequest request, ServerCallContext context) =>
        router.For(context).ResignAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaderResponse> Leader(LeaderRequest request, ServerCallContext context) =>
        router.For(context).LeaderAsync(request, Who(context), context.CancellationToken);

    public override Task Observe(LeaderRequest request, IServerStreamWriter<LeaderResponse> responseStream, ServerCallContext context) =>
        router.For(context).ObserveAsync(request, Who(context), responseStream.WriteAsync, context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
