using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Maintenance;

/// <summary>etcd's Maintenance service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdErrorInterceptor"/>).</summary>
[BindServiceMethod(typeof(MaintenanceService), nameof(BindService))]
public sealed class MaintenanceService(ShardServer face, ServerOptions options) : Etcdserverpb.Maintenance.MaintenanceBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Maintenance.MaintenanceBase? service) =>
        Etcdserverpb.Maintenance.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context) =>
        Task.FromResult(face.Status(request, Who(context)));

    public override Task<HashKVResponse> HashKV(HashKVRequest request, ServerCallContext context) =>
        face.HashKVAsync(request, Who(context), context.CancellationToken);

    public override Task<HashResponse> Hash(HashRequest request, ServerCallContext context) =>
        face.HashAsync(request, Who(context), context.CancellationToken);

    public override Task Snapshot(SnapshotRequest request, IServerStreamWriter<SnapshotResponse> responseStream, ServerCallContext context) =>
        face.SnapshotAsync(request, Who(context), responseStream.WriteAsync, context.CancellationToken);

    public override Task<AlarmResponse> Alarm(AlarmRequest request, ServerCallContext context) =>
        face.AlarmAsync(request, Who(context), context.CancellationToken);

    public override Task<DefragmentResponse> Defragment(DefragmentRequest request, ServerCallContext context) =>
        Task.FromResult(face.Defragment(request, Who(context)));

    public override Task<MoveLeaderResponse> MoveLeader(MoveLeaderRequest request, ServerCallContext context) =>
        Task.FromResult(face.MoveLeader(request, Who(context)));

    public override Task<DowngradeResponse> Downgrade(DowngradeRequest request, ServerCallContext context) =>
        Task.FromResult(face.Downgrade(request, Who(context)));

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, face, options.ClientCertAuth);
}
