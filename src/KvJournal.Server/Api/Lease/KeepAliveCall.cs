using System.IO.Pipelines;
using System.Threading.Channels;
using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Grpc;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Lease;

/// <summary>
/// etcd's LeaseKeepAlive stream, hand-bound (<see cref="HandBoundGrpc"/>): each request is one
/// renewal, answered in order. Renewals are not awaited one by one: a stream carrying many leases
/// (etcd clientv3's KeepAlive sends every lease's renewal on one stream) has them all in flight at
/// once, so they share the journal entries that carry them, and answers that are ready together
/// leave in one flush. A stream per renewal (etcd's KeepAliveOnce and its benchmark) costs one
/// request read, one renewal and one answer; the client's reset after it ends the read quietly.
/// </summary>
internal sealed class KeepAliveCall(HandBoundGrpc grpc)
{
    // Renewals one stream may have in flight before reading its next request waits.
    private const int MaxRenewalsInFlight = 1024;

    public async Task ServeAsync(HttpContext http, ShardServer face, CancellationToken cancellationToken)
    {
        var who = CallMetadata.Who(http, face, grpc.ClientCertAuth);
        var answers = Channel.CreateBounded<Task<LeaseKeepAliveResponse>>(new BoundedChannelOptions(MaxRenewalsInFlight) { SingleReader = true, SingleWriter = true });
        // A renewal that fails (the journal away) ends the call with its error; reading stops with it.
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var writing = WriteInOrderAsync(answers.Reader, http.Response.BodyWriter, failed, cancellationToken);
        try
        {
            while (await GrpcMessages.ReadAsync(http.Request, LeaseKeepAliveRequest.Parser, grpc.MaxMessageBytes, MethodType.DuplexStreaming, failed.Token).ConfigureAwait(false) is { } request)
                await answers.Writer.WriteAsync(face.LeaseKeepAliveAsync(request, who, cancellationToken), failed.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (failed.IsCancellationRequested) { }
        finally
        {
            answers.Writer.TryComplete();
        }
        await writing.ConfigureAwait(false);
    }

    /// <summary>
    /// Writes each answer once it is ready, in the order the renewals came; flushes when the next
    /// answer is not ready yet (or failed: what was written goes out before the error).
    /// </summary>
    private static async Task WriteInOrderAsync(ChannelReader<Task<LeaseKeepAliveResponse>> answers, PipeWriter body, CancellationTokenSource failed, CancellationToken call)
    {
        try
        {
            while (await answers.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (answers.TryRead(out var answer))
                {
                    GrpcMessages.Write(body, await answer.ConfigureAwait(false));
                    if (!answers.TryPeek(out var next) || !next.IsCompletedSuccessfully)
                        await body.FlushAsync(call).ConfigureAwait(false);
                }
            }
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
}
