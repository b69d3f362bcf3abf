using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Lease;

/// <summary>etcd's Lease service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdErrorInterceptor"/>).</summary>
[BindServiceMethod(typeof(LeaseService), nameof(BindService))]
public sealed class LeaseService(ShardServer face, ServerOptions options) : Etcdserverpb.Lease.LeaseBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Lease.LeaseBase? service) =>
        Etcdserverpb.Lease.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<LeaseGrantResponse> LeaseGrant(LeaseGrantRequest request, ServerCallContext context) =>
        face.LeaseGrantAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaseRevokeResponse> LeaseRevoke(LeaseRevokeRequest request, ServerCallContext context) =>
        face.LeaseRevokeAsync(request, Who(context), context.CancellationToken);

    /// <summary>Each request is one renewal, answered in order.</summary>
    public override async Task LeaseKeepAlive(IAsyncStreamReader<LeaseKeepAliveRequest> requestStream, IServerStreamWriter<LeaseKeepAliveResponse> responseStream, ServerCallContext context)
    {
        var who = Who(context);
        while (await NextAsync(requestStream, context).ConfigureAwait(false))
        {
            var response = await face.LeaseKeepAliveAsync(requestStream.Current, who, context.CancellationToken).ConfigureAwait(false);
            await responseStream.WriteAsync(response, context.CancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The next keep-alive, or false once the client is done. etcd's KeepAliveOnce (and its
    /// benchmark) opens a stream per renewal and resets it after the answer; that reset ends the
    /// call quietly here instead of as an exception rethrown through every async frame above.
    /// </summary>
    private static async Task<bool> NextAsync(IAsyncStreamReader<LeaseKeepAliveRequest> requests, ServerCallContext context)
    {
        try
        {
            return await requests.MoveNext(context.CancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException || (ex is OperationCanceledException && context.CancellationToken.IsCancellationRequested))
        {
            return false;
        }
    }

    public override Task<LeaseTimeToLiveResponse> LeaseTimeToLive(LeaseTimeToLiveRequest request, ServerCallContext context) =>
        face.LeaseTimeToLiveAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaseLeasesResponse> LeaseLeases(LeaseLeasesRequest request, ServerCallContext context) =>
        face.LeaseLeasesAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, face, options.ClientCertAuth);
}
