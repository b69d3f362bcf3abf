using Grpc.Core;
using Grpc.Core.Interceptors;
using KvJournal.Journal;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// What a call hears when its shard cannot reach the journal. A call carrying etcd's
/// <c>hasleader=true</c> metadata (clientv3.WithRequireLeader, kube-apiserver's watches) is refused
/// up front with "etcdserver: no leader", as etcd refuses it on a member without a leader; any
/// other call that needed the journal gets etcd's unavailable error instead of a bare exception.
/// </summary>
public sealed class JournalAvailabilityInterceptor(ShardRouter router) : Interceptor
{
    private const string RequireLeaderKey = "hasleader";
    private static readonly Status NoLeader = EtcdErrors.ToStatus(EtcdError.NoLeader);

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (JournalUnavailableException)
        {
            throw new RpcException(EtcdErrors.ToStatus(EtcdError.JournalUnavailable));
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (JournalUnavailableException)
        {
            throw new RpcException(EtcdErrors.ToStatus(EtcdError.JournalUnavailable));
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (JournalUnavailableException)
        {
            throw new RpcException(EtcdErrors.ToStatus(EtcdError.JournalUnavailable));
        }
    }

    /// <summary>True when the call asked for a leader (etcd clients' WithRequireLeader).</summary>
    /// <remarks>Read from the HTTP headers: building the call's Metadata copies every header, on every call.</remarks>
    public static bool RequiresLeader(ServerCallContext context) => context.GetHttpContext().Request.Headers[RequireLeaderKey] == "true";

    private void RefuseWithoutLeader(ServerCallContext context)
    {
        if (RequiresLeader(context) && !router.For(context.GetHttpContext()).JournalReachable) throw new RpcException(NoLeader);
    }
}
