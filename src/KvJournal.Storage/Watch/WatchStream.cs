using System.Threading.Channels;
using Etcdserverpb;

namespace KvJournal.Storage.Watch;

/// <summary>A response queued on a stream, and the watcher it counts against (null for control replies).</summary>
public readonly record struct QueuedResponse(WatchResponse Response, Watcher? Watcher);

/// <summary>
/// The hub's side of one client Watch stream: its watchers and one ordered queue of responses.
/// Everything for the stream (created, events, progress, cancel) goes through the queue, so the
/// client sees them in the order the hub decided them. A single writer drains it to the wire.
/// </summary>
public sealed class WatchStream : IDisposable
{
    private readonly Channel<QueuedResponse> _queue =
        Channel.CreateUnbounded<QueuedResponse>(new UnboundedChannelOptions { SingleReader = true });

    internal WatchStream(WatchHub hub) => Hub = hub;

    internal WatchHub Hub { get; }

    /// <summary>Watchers by id; guarded by the hub's lock.</summary>
    internal Dictionary<long, Watcher> Watchers { get; } = [];

    /// <summary>The next id to try for a server-assigned watch id (etcd starts at 0).</summary>
    internal long NextAutoId { get; set; }

    /// <summary>A RequestProgress is waiting for every watcher on the stream to catch up.</summary>
    internal bool ProgressDeferred { get; set; }

    /// <summary>What the writer sends, in order; completes when the stream closes or the hub stops.</summary>
    public ChannelReader<QueuedResponse> Responses => _queue.Reader;

    public void Create(in WatchSpec spec) => Hub.Create(this, spec);

    public void Cancel(long watchId) => Hub.Cancel(this, watchId);

    public void RequestProgress() => Hub.RequestProgress(this);

    /// <summary>Called by the writer once a response has gone out, freeing room for its watcher.</summary>
    public void Sent(in QueuedResponse response)
    {
        if (response.Watcher is { } w && w.Written() == WatchHub.MaxPendingPerWatcher - 1 && !w.Synced) Hub.SignalCatchUp();
    }

    internal void Enqueue(WatchResponse response, Watcher? watcher)
    {
        watcher?.Queued();
        _queue.Writer.TryWrite(new QueuedResponse(response, watcher));
    }

    internal void Complete(Exception? error) => _queue.Writer.TryComplete(error);

    /// <summary>Removes every watcher of the stream; the stream queues nothing more.</summary>
    public void Dispose() => Hub.Close(this);
}
