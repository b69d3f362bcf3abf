using Grpc.Core;
using Grpc.Core.Interceptors;
using KvJournal.Journal;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// Maps what the shard's face throws to etcd's gRPC status through the one table: an
/// <see cref="EtcdException"/> to its code and message, a journal that could not be reached to
/// etcd's unavailable error. A call carrying etcd's <c>hasleader=true</c> metadata
/// (clientv3.WithRequireLeader, kube-apiserver's watches) is refused up front with "etcdserver: no
/// leader" while its shard cannot reach the journal, as etcd refuses it on a member without a leader.
/// </summary>
public sealed class EtcdErrorInterceptor(ShardRouter router) : Interceptor
{
    private const string RequireLeaderKey = "hasleader";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ToStatus(ex) is { } status)
        {
            throw new RpcException(status);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ToStatus(ex) is { } status)
        {
            throw new RpcException(status);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        RefuseWithoutLeader(context);
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ToStatus(ex) is { } status)
        {
            throw new RpcException(status);
        }
    }

    /// <summary>etcd's status for what the face threw, or null for anything else (gRPC reports that as it does).</summary>
    public static Status? ToStatus(Exception ex) => ex switch
    {
        EtcdException etcd => EtcdErrors.ToStatus(etcd.Status),
        JournalUnavailableException => EtcdErrors.ToStatus(EtcdError.JournalUnavailable),
        _ => null,
    };

    /// <summary>True when the call asked for a leader (etcd clients' WithRequireLeader).</summary>
    /// <remarks>Read from the HTTP headers: building the call's Metadata copies every header, on every call.</remarks>
    public static bool RequiresLeader(ServerCallContext context) => context.GetHttpContext().Request.Headers[RequireLeaderKey] == "true";

    private void RefuseWithoutLeader(ServerCallContext context)
    {
        if (RequiresLeader(context) && !router.For(context.GetHttpContext()).HasLeader) EtcdErrors.Throw(EtcdError.NoLeader);
    }
}
