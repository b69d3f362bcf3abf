using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using KvJournal.Journal;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// What every gRPC call goes through, in one interceptor (each one more costs the call a frame
/// and an allocation): a call carrying etcd's <c>hasleader=true</c> metadata
/// (clientv3.WithRequireLeader, kube-apiserver's watches) is refused up front with "etcdserver: no
/// leader" while its shard cannot reach the journal, as etcd refuses it on a member without a
/// leader; what the shard's face throws is mapped to etcd's status through the one table (an
/// <see cref="EtcdException"/> to its code and message, a journal that could not be reached to
/// etcd's unavailable error); and the call is counted in <see cref="GrpcMetrics"/> with the
/// status it ended with.
/// </summary>
public sealed class EtcdCallInterceptor(ShardRouter router, GrpcMetrics metrics) : Interceptor
{
    private const string RequireLeaderKey = "hasleader";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        metrics.Started("unary", context.Method);
        long started = Stopwatch.GetTimestamp();
        try
        {
            RefuseWithoutLeader(context);
            var response = await continuation(request, context).ConfigureAwait(false);
            metrics.Handled("unary", context.Method, StatusCode.OK);
            return response;
        }
        catch (Exception ex)
        {
            throw Ended("unary", context, ex);
        }
        finally
        {
            metrics.UnaryLatency.Observe(Stopwatch.GetElapsedTime(started));
        }
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamAsync("server_stream", context, () => continuation(request, responseStream, context));

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamAsync("bidi_stream", context, () => continuation(requestStream, responseStream, context));

    private async Task StreamAsync(string type, ServerCallContext context, Func<Task> serve)
    {
        metrics.Started(type, context.Method);
        try
        {
            RefuseWithoutLeader(context);
            await serve().ConfigureAwait(false);
            metrics.Handled(type, context.Method, StatusCode.OK);
        }
        catch (Exception ex)
        {
            throw Ended(type, context, ex);
        }
    }

    /// <summary>Counts a call that ended with <paramref name="ex"/>; returns what to throw: etcd's status where the face's error has one, else the exception itself.</summary>
    private Exception Ended(string type, ServerCallContext context, Exception ex)
    {
        var mapped = ToStatus(ex) is { } status ? new RpcException(status) : null;
        var code = (mapped ?? ex) switch
        {
            RpcException rpc => rpc.StatusCode,
            OperationCanceledException => StatusCode.Cancelled,
            _ => StatusCode.Unknown,
        };
        metrics.Handled(type, context.Method, code);
        return mapped ?? ex;
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
        if (RequiresLeader(context) && !router.For(context).HasLeader) EtcdErrors.Throw(EtcdError.NoLeader);
    }
}
