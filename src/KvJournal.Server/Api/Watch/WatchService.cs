using Etcdserverpb;
using Grpc.Core;
using KvJournal.Protos.Wire;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Watch;

/// <summary>etcd's Watch service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
public sealed class WatchService(ShardRouter router, ServerOptions options) : WatchServiceBase
{
    private static readonly WriteOptions Buffered = new(WriteFlags.BufferHint);

    public override Task Watch(IAsyncStreamReader<WatchRequest> requestStream, IServerStreamWriter<WatchResponseFrame> responseStream, ServerCallContext context)
    {
        var face = router.For(context);
        var http = context.GetHttpContext();
        return face.WatchAsync(requestStream.ReadAllAsync(context.CancellationToken), CallMetadata.Who(http, face, options.ClientCertAuth),
            // Metadata etcd clients add with WithRequireLeader (kube-apiserver always does).
            CallMetadata.RequiresLeader(http.Request),
            (frame, more, ct) =>
            {
                // Flush only when the queue is drained, so a burst leaves in few network writes.
                responseStream.WriteOptions = more ? Buffered : WriteOptions.Default;
                return responseStream.WriteAsync(frame, ct);
            },
            context.CancellationToken);
    }
}
