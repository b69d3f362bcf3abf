using Grpc.Core;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using V3electionpb;

namespace KvJournal.Server.Api.Concurrency;

/// <summary>
/// etcd's v3election Observe stream: an adapter from gRPC to the shard's face (errors are mapped by
/// <see cref="EtcdCallInterceptor"/>). The service's unary methods are hand-bound (<see cref="EtcdMethods"/>).
/// </summary>
[BindServiceMethod(typeof(ElectionService), nameof(BindService))]
public sealed class ElectionService(ShardRouter router, ServerOptions options) : Election.ElectionBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Election.ElectionBase? service) =>
        Election.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task Observe(LeaderRequest request, IServerStreamWriter<LeaderResponse> responseStream, ServerCallContext context)
    {
        var face = router.For(context);
        return face.ObserveAsync(request, CallMetadata.Who(context.GetHttpContext(), face, options.ClientCertAuth), responseStream.WriteAsync, context.CancellationToken);
    }
}
