using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Maintenance;

/// <summary>etcd's Maintenance service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(MaintenanceService), nameof(BindService))]
public sealed class MaintenanceService(ShardRouter router, ServerOptions options) : Etcdserverpb.Maintenance.MaintenanceBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Maintenance.MaintenanceBase? service) =>
        Etcdserverpb.Maintenance.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context) =>
        Task.FromResult(router.For(context).Status(request, Who(context)));

    public override Task<HashKVResponse> HashKV(HashKVRequest request, ServerCallContext context) =>
        router.For(context).HashKVAsync(request, Who(context), context.CancellationToken);

    public override Task<HashResponse> Hash(HashRequest request, ServerCallContext context) =>
        router.For(context).HashAsync(request, Who(context), context.CancellationToken);

    public override Task Snapshot(SnapshotRequest request, IServerStreamWriter<SnapshotResponse> responseStream, ServerCallContext context) =>
        router.For(context).SnapshotAsync(request, Who(context), responseStream.WriteAsync, context.CancellationToken);

    public override Task<AlarmResponse> Alarm(AlarmRequest request, ServerCallContext context) =>
        router.For(context).AlarmAsync(request, Who(context), context.CancellationToken);

    public override Task<DefragmentResponse> Defragment(DefragmentRequest request, ServerCallContext context) =>
        Task.FromResult(router.For(context).Defragment(request, Who(context)));

    public override Task<MoveLeaderResponse> MoveLeader(MoveLeaderRequest request, ServerCallContext context) =>
        Task.FromResult(router.For(context).MoveLeader(request, Who(context)));

    public override Task<DowngradeResponse> Downgrade(DowngradeRequest request, ServerCallContext context) =>
        Task.FromResult(router.For(context).Downgrade(request, Who(context)));

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
