using System.Threading.Channels;
using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Lease;

/// <summary>etcd's Lease service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(LeaseService), nameof(BindService))]
public sealed class LeaseService(ShardRouter router, ServerOptions options) : Etcdserverpb.Lease.LeaseBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Lease.LeaseBase? service) =>
        Etcdserverpb.Lease.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<LeaseGrantResponse> LeaseGrant(LeaseGrantRequest request, ServerCallContext context) =>
        router.For(context).LeaseGrantAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaseRevokeResponse> LeaseRevoke(LeaseRevokeRequest request, ServerCallContext context) =>
        router.For(context).LeaseRevokeAsync(request, Who(context), context.CancellationToken);

    /// <summary>
    /// Each request is one renewal, answered in order. Renewals are not awaited one by one: a
    /// stream carrying many leases (etcd clientv3's KeepAlive sends every lease's renewal on one
    /// stream) has them all in flight at once, so they share the journal entries that carry them,
    /// while the answers go out in the order the requests came. The requests are read from the
    /// body pipe (<see cref="KeepAliveRequests"/>); <paramref name="requestStream"/> stays unused.
    /// </summary>
    public override async Task LeaseKeepAlive(IAsyncStreamReader<LeaseKeepAliveRequest> requestStream, IServerStreamWriter<LeaseKeepAliveResponse> responseStream, ServerCallContext context)
    {
        var face = router.For(context);
        var who = CallerIdentities.Of(context, face, options.ClientCertAuth);
        var http = context.GetHttpContext();
        var requests = new KeepAliveRequests(http.Request.BodyReader, options.MaxRequestBytes + ServerOptions.GrpcOverheadBytes, http.Request.Headers.GrpcEncoding.ToString());
        var answers = Channel.CreateBounded<Task<LeaseKeepAliveResponse>>(new BoundedChannelOptions(MaxRenewalsInFlight) { SingleReader = true, SingleWriter = true });
        // A renewal that fails (the journal away) ends the call with its error; reading stops with it.
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        var writing = WriteInOrderAsync(answers.Reader, responseStream, failed, context.CancellationToken);
        try
        {
            while (await requests.NextAsync(failed.Token).ConfigureAwait(false) is { } request)
                await answers.Writer.WriteAsync(face.LeaseKeepAliveAsync(request, who, context.CancellationToken), failed.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (failed.IsCancellationRequested) { }
        finally
        {
            answers.Writer.TryComplete();
        }
        await writing.ConfigureAwait(false);
    }

    // Renewals one stream may have in flight before reading its next request waits.
    private const int MaxRenewalsInFlight = 1024;

    private static async Task WriteInOrderAsync(ChannelReader<Task<LeaseKeepAliveResponse>> answers, IServerStreamWriter<LeaseKeepAliveResponse> responseStream,
        CancellationTokenSource failed, CancellationToken call)
    {
        try
        {
            while (await answers.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                while (answers.TryRead(out var answer))
                    await responseStream.WriteAsync(await answer.ConfigureAwait(false), call).ConfigureAwait(false);
        }
        catch (Exception ex) when (call.IsCancellationRequested && ex is OperationCanceledException or IOException)
        {
            // The client reset the stream (etcd's KeepAliveOnce does after its answer): nothing to tell it.
        }
        catch
        {
            await failed.CancelAsync().ConfigureAwait(false);
            throw;
        }
    }

    public override Task<LeaseTimeToLiveResponse> LeaseTimeToLive(LeaseTimeToLiveRequest request, ServerCallContext context) =>
        router.For(context).LeaseTimeToLiveAsync(request, Who(context), context.CancellationToken);

    public override Task<LeaseLeasesResponse> LeaseLeases(LeaseLeasesRequest request, ServerCallContext context) =>
        router.For(context).LeaseLeasesAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
