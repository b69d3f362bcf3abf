using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Grpc;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Watch;

/// <summary>
/// etcd's Watch stream, hand-bound (<see cref="HandBoundGrpc"/>): the requests read from the
/// body pipe go to the shard's face, which answers with <see cref="Protos.Wire.WatchResponseFrame"/>s
/// (wire-identical to etcdserverpb.WatchResponse, each event encoded once for every watcher that
/// gets it). A response is flushed only when the stream has no more queued, so a burst leaves in
/// few network writes.
/// </summary>
internal sealed class WatchCall(HandBoundGrpc grpc)
{
    public Task ServeAsync(HttpContext http, ShardServer face, CancellationToken cancellationToken)
    {
        var body = http.Response.BodyWriter;
        return face.WatchAsync(Requests(http.Request, cancellationToken), CallMetadata.Who(http, face, grpc.ClientCertAuth),
            // Metadata etcd clients add with WithRequireLeader (kube-apiserver always does).
            CallMetadata.RequiresLeader(http.Request),
            (frame, more, ct) =>
            {
                GrpcMessages.Write(body, frame);
                return more ? Task.CompletedTask : body.FlushAsync(ct).AsTask();
            },
            cancellationToken);
    }

    private async IAsyncEnumerable<WatchRequest> Requests(HttpRequest request, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        while (await GrpcMessages.ReadAsync(request, WatchRequest.Parser, grpc.MaxMessageBytes, MethodType.DuplexStreaming, cancellationToken).ConfigureAwait(false) is { } next)
            yield return next;
    }
}
