using Etcdserverpb;
using Grpc.Core;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Maintenance;

/// <summary>
/// etcd's Maintenance.Snapshot stream: an adapter from gRPC to the shard's face (errors are mapped
/// by <see cref="EtcdCallInterceptor"/>). The service's unary methods are hand-bound (<see cref="EtcdMethods"/>).
/// </summary>
[BindServiceMethod(typeof(MaintenanceService), nameof(BindService))]
public sealed class MaintenanceService(ShardRouter router, ServerOptions options) : Etcdserverpb.Maintenance.MaintenanceBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Maintenance.MaintenanceBase? service) =>
        Etcdserverpb.Maintenance.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task Snapshot(SnapshotRequest request, IServerStreamWriter<SnapshotResponse> responseStream, ServerCallContext context)
    {
        var face = router.For(context);
        return face.SnapshotAsync(request, CallMetadata.Who(context.GetHttpContext(), face, options.ClientCertAuth), responseStream.WriteAsync, context.CancellationToken);
    }
}
