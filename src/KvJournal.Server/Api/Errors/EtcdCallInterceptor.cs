using Grpc.Core;
using Grpc.Core.Interceptors;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// What every call Grpc.AspNetCore serves goes through, in one interceptor (each one more costs the
/// call a frame and an allocation). Those are the long-lived streams (Watch, Snapshot, Observe);
/// unary calls and keep-alives are hand-bound (<see cref="Grpc.HandBoundGrpc"/>) and do the same
/// there. A call carrying etcd's <c>hasleader=true</c> metadata is refused up front with
/// "etcdserver: no leader" while its shard cannot reach the journal, as etcd refuses it on a member
/// without a leader; what the shard's face throws is mapped to etcd's status through the one table;
/// and the call is counted in <see cref="GrpcMetrics"/> with the status it ended with.
/// </summary>
public sealed class EtcdCallInterceptor(ShardRouter router, GrpcMetrics metrics) : Interceptor
{
    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamAsync("server_stream", context, () => continuation(request, responseStream, context));

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamAsync("bidi_stream", context, () => continuation(requestStream, responseStream, context));

    private async Task StreamAsync(string type, ServerCallContext context, Func<Task> serve)
    {
        var counters = metrics.For(type, context.Method);
        counters.Started();
        try
        {
            if (CallMetadata.RequiresLeader(context.GetHttpContext().Request) && !router.For(context).HasLeader) EtcdErrors.Throw(EtcdError.NoLeader);
            await serve().ConfigureAwait(false);
            counters.Handled(StatusCode.OK);
        }
        catch (Exception ex)
        {
            // The face's errors become etcd's status; anything else gRPC reports as it does.
            var mapped = ex is not RpcException && EtcdErrors.StatusOf(ex) is { } status ? new RpcException(status) : null;
            counters.Handled((mapped ?? ex) switch
            {
                RpcException rpc => rpc.StatusCode,
                OperationCanceledException => StatusCode.Cancelled,
                _ => StatusCode.Unknown,
            });
            if (mapped is not null) throw mapped;
            throw;
        }
    }
}
