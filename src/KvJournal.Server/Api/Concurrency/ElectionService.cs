using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using V3electionpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>etcd's v3election service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdErrorInterceptor"/>).</summary>
[BindServiceMethod(typeof(ElectionService), nameof(BindService))]
public sealed class ElectionService(ShardServer face, ServerOptions options) : Election.ElectionBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Election.ElectionBase? service) =>
        Election.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<CampaignResponse> Campaign(CampaignRequest request, ServerCallContext context) =>
        face.CampaignAsync(request, Who(context), context.CancellationToken);

    public override Task<ProclaimResponse> Proclaim(ProclaimRequest request, ServerCallContext context) =>
        face.ProclaimAsync(request, Who(context), context.CancellationToken);

    public override Task<ResignResponse> Resign(ResignRequest request, ServerCallContext context) =>
        face.ResignAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaderResponse> Leader(LeaderRequest request, ServerCallContext context) =>
        face.LeaderAsync(request, Who(context), context.CancellationToken);

    public override Task Observe(LeaderRequest request, IServerStreamWriter<LeaderResponse> responseStream, ServerCallContext context) =>
        face.ObserveAsync(request, Who(context), responseStream.WriteAsync, context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, face, options.ClientCertAuth);
}
