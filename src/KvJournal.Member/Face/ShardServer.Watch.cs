using Etcdserverpb;
using KvJournal.Protos.Wire;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Watch;

namespace KvJournal.Member.Face;

// etcd's Watch service: one stream of requests is one WatchStream. The receive side turns
// requests into hub calls; the send side drains the stream's ordered queue to the wire.
public sealed partial class ShardServer
{
    // etcd checks for a leader at every election tick; this is how often a stream that requires
    // one looks at whether its journal is still reachable.
    private static readonly TimeSpan LeaderCheckInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Serves one watch stream until the client leaves, a request cannot be read, the send fails, or (with
    /// <paramref name="requireLeader"/>, etcd's WithRequireLeader) the journal goes away.
    /// <paramref name="send"/> writes one response; its flag says more are queued, so the wire
    /// may hold the write back and send a burst in few network writes.
    /// </summary>
    public async Task WatchAsync(IAsyncEnumerable<WatchRequest> requests, CallerIdentity who, bool requireLeader,
        Func<WatchResponseFrame, bool, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        using var stream = shard.Watches.OpenStream();
        using var done = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var sending = SendWatchAsync(stream, send, done.Token);
        var receiving = ReceiveWatchAsync(stream, requests, who, done.Token);
        var leaderLost = requireLeader ? LeaderLostAsync(done.Token) : Task.Delay(Timeout.Infinite, done.Token);
        var first = await Task.WhenAny(sending, receiving, leaderLost).ConfigureAwait(false);
        // The client ending its side leaves the stream open, as in etcd: its watchers go on
        // sending until it leaves. A request that could not be read ends it with that error.
        if (first == receiving && receiving.IsCompletedSuccessfully) first = await Task.WhenAny(sending, leaderLost).ConfigureAwait(false);
        await done.CancelAsync().ConfigureAwait(false);
        try
        {
            if (first == leaderLost && leaderLost.IsCompletedSuccessfully) throw new EtcdException(EtcdError.NoLeader);
            // A request that could not be read, or a send that failed, ends the call.
            await first.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away.
        }
        catch (Exception ex) when (ex is not EtcdException && first == sending && !cancellationToken.IsCancellationRequested)
        {
            // The hub ended the stream because the shard stopped: the member lost its journal.
            throw new EtcdException(requireLeader ? EtcdError.NoLeader : EtcdError.Stopped);
        }
        finally
        {
            try { await Task.WhenAll(sending, receiving).ConfigureAwait(false); }
            catch (Exception) { /* the first outcome is what the client hears */ }
        }
    }

    // Completes when the journal has become unreachable (etcd: the member lost its leader).
    private async Task LeaderLostAsync(CancellationToken cancellationToken)
    {
        while (shard.JournalReachable) await Task.Delay(LeaderCheckInterval, shard.Time, cancellationToken).ConfigureAwait(false);
    }

    // etcd's isWatchPermitted: the caller (resolved per create, as the token may have expired) must
    // be able to read the range; a refusal is a canceled create whose reason is the gRPC error text.
    private string? WatchDenied(CallerIdentity who, WatchCreateRequest create)
    {
        if (!shard.Auth.Enabled) return null;
        try
        {
            CheckRead(UserOf(who), create.Key, create.RangeEnd);
            return null;
        }
        catch (EtcdException ex)
        {
            return ex.Status.ToString();
        }
    }

    private async Task ReceiveWatchAsync(WatchStream stream, IAsyncEnumerable<WatchRequest> requests, CallerIdentity who, CancellationToken cancellationToken)
    {
        await foreach (var request in requests.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            switch (request.RequestUnionCase)
            {
                case WatchRequest.RequestUnionOneofCase.CreateRequest:
                    if (RequestValidator.WatchCreate(request.CreateRequest, out var spec) is { } refusal) shard.Watches.Refuse(stream, refusal);
                    else if (WatchDenied(who, request.CreateRequest) is { } denied) shard.Watches.Refuse(stream, denied);
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

    private async Task SendWatchAsync(WatchStream stream, Func<WatchResponseFrame, bool, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        int fragmentAbove = limits.WatchFragmentAboveBytes;
        while (await stream.WaitToTakeAsync(cancellationToken).ConfigureAwait(false))
        {
            while (stream.TryTake(out var item))
            {
                var response = item.Frame;
                Fill(response.Header);
                bool more = stream.HasMore;
                if (item.Watcher is { Fragment: true } && response.Events.Count > 1 && response.CalculateSize() >= fragmentAbove)
                {
                    foreach (var piece in WatchFragments.Split(response, fragmentAbove))
                        await send(piece, more, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await send(response, more, cancellationToken).ConfigureAwait(false);
                }
                stream.Sent(item);
            }
        }
    }
}
