using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Shards;
using KvJournal.Protos.Wire;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Validation;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Watch;

namespace KvJournal.Server.Api.Watch;

/// <summary>
/// etcd's Watch service: one bidirectional call is one <see cref="WatchStream"/>. The receive side
/// turns requests into hub calls; the send side drains the stream's ordered queue to the wire.
/// </summary>
public sealed class WatchService(Shard shard, ServerOptions options) : WatchServiceBase
{
    // etcd fragments responses above the request limit plus gRPC overhead (MaxRequestBytesWithOverhead).
    private readonly int _fragmentAbove = options.MaxRequestBytes + ServerOptions.GrpcOverheadBytes;

    // etcd checks for a leader at every election tick; this is how often a stream that requires
    // one looks at whether its journal is still reachable.
    private static readonly TimeSpan LeaderCheckInterval = TimeSpan.FromMilliseconds(500);

    public override async Task Watch(IAsyncStreamReader<WatchRequest> requestStream, IServerStreamWriter<WatchResponseFrame> responseStream, ServerCallContext context)
    {
        // Metadata etcd clients add with WithRequireLeader (kube-apiserver always does).
        bool requireLeader = JournalAvailabilityInterceptor.RequiresLeader(context);
        using var stream = shard.Watches.OpenStream();
        using var done = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        var sending = SendAsync(stream, responseStream, done.Token);
        var receiving = ReceiveAsync(stream, requestStream, context, done.Token);
        var leaderLost = requireLeader ? WatchLeaderAsync(done.Token) : Task.Delay(Timeout.Infinite, done.Token);
        var first = await Task.WhenAny(sending, receiving, leaderLost).ConfigureAwait(false);
        await done.CancelAsync().ConfigureAwait(false);
        try
        {
            if (first == leaderLost && leaderLost.IsCompletedSuccessfully) throw EtcdErrors.Exception(EtcdError.NoLeader);
            // The client closing its side ends the call, as in etcd; a send failure ends it too.
            await first.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The client went away.
        }
        catch (Exception ex) when (ex is not RpcException && first == sending && !context.CancellationToken.IsCancellationRequested)
        {
            // The hub ended the stream because the shard stopped: the member lost its journal.
            throw new RpcException(requireLeader
                ? EtcdErrors.ToStatus(EtcdError.NoLeader)
                : EtcdErrors.ToStatus(EtcdError.Stopped));
        }
        finally
        {
            try { await Task.WhenAll(sending, receiving).ConfigureAwait(false); }
            catch (Exception) { /* the first outcome is what the client hears */ }
        }
    }

    // Completes when the journal has become unreachable (etcd: the member lost its leader).
    private async Task WatchLeaderAsync(CancellationToken cancellationToken)
    {
        while (shard.JournalReachable) await Task.Delay(LeaderCheckInterval, cancellationToken).ConfigureAwait(false);
    }

    // etcd's isWatchPermitted: the caller (resolved per create, as the token may have expired) must
    // be able to read the range; a refusal is a canceled create whose reason is the gRPC error text.
    private string? Denied(ServerCallContext context, WatchCreateRequest create)
    {
        if (!shard.Auth.Enabled) return null;
        try
        {
            Caller.Of(context, shard, options).CheckRead(create.Key, create.RangeEnd);
            return null;
        }
        catch (RpcException ex)
        {
            return $"rpc error: code = {ex.StatusCode} desc = {ex.Status.Detail}";
        }
    }

    private async Task ReceiveAsync(WatchStream stream, IAsyncStreamReader<WatchRequest> requests, ServerCallContext context, CancellationToken cancellationToken)
    {
        await foreach (var request in requests.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            switch (request.RequestUnionCase)
            {
                case WatchRequest.RequestUnionOneofCase.CreateRequest:
                    if (RequestValidator.WatchCreate(request.CreateRequest, out var spec) is { } refusal) shard.Watches.Refuse(stream, refusal);
                    else if (Denied(context, request.CreateRequest) is { } denied) shard.Watches.Refuse(stream, denied);
                    else stream.Create(spec);
                    break;
                case WatchRequest.RequestUnionOneofCase.CancelRequest:
                    stream.Cancel(request.CancelRequest.WatchId);
                    break;
                case WatchRequest.RequestUnionOneofCase.ProgressRequest:
                    stream.RequestProgress();
                    break;
                default:
                    // etcd ignores a request it does not understand rather than end the stream.
                    break;
            }
        }
    }

    private async Task SendAsync(WatchStream stream, IServerStreamWriter<WatchResponseFrame> responses, CancellationToken cancellationToken)
    {
        var buffered = new WriteOptions(WriteFlags.BufferHint);
        while (await stream.WaitToTakeAsync(cancellationToken).ConfigureAwait(false))
        {
            while (stream.TryTake(out var item))
            {
                var response = item.Frame;
                ResponseHeaders.Fill(response.Header, shard);
                // Flush only when the queue is drained, so a burst leaves in few network writes.
                responses.WriteOptions = stream.HasMore ? buffered : WriteOptions.Default;
                if (item.Watcher is { Fragment: true } && response.Events.Count > 1 && response.CalculateSize() >= _fragmentAbove)
                {
                    foreach (var piece in WatchFragments.Split(response, _fragmentAbove))
                        await responses.WriteAsync(piece, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await responses.WriteAsync(response, cancellationToken).ConfigureAwait(false);
                }
                stream.Sent(item);
            }
        }
    }
}
