using System.Threading.Channels;
using Google.Protobuf;
using KvJournal.Protos.Wire;

namespace KvJournal.Storage.Watch;

/// <summary>A response queued on a stream, and the watcher whose budget it uses (null for control replies).</summary>
public sealed class OutboundResponse(WatchResponseFrame frame, Watcher? watcher)
{
    public WatchResponseFrame Frame { get; } = frame;
    public Watcher? Watcher { get; } = watcher;
    /// <summary>Encoded event bytes in <see cref="Frame"/>.</summary>
    internal long EventBytes { get; set; }
}

/// <summary>
/// The hub's side of one client Watch stream: its watchers and one ordered queue of responses.
/// Everything for the stream (created, events, progress, cancel) goes through the queue, so the
/// client sees them in the order the hub decided them. A single writer drains it to the wire.
/// </summary>
/// <remarks>
/// While a watcher's last events response still waits in the queue, later revisions are appended
/// to it (up to <see cref="CoalesceBytes"/>) instead of queuing another: a client that falls a
/// little behind gets fewer, larger responses, each revision still whole. A control response
/// closes every open one first, so a progress revision never follows events newer than it.
/// </remarks>
public sealed class WatchStream : IDisposable
{
    internal const int CoalesceBytes = 1024 * 1024;

    private readonly Channel<OutboundResponse> _queue =
        Channel.CreateUnbounded<OutboundResponse>(new UnboundedChannelOptions { SingleReader = true });
    // Guards Watcher.Open of this stream's watchers and _open, between the hub and the writer.
    private readonly Lock _sync = new();
    private readonly List<Watcher> _open = [];

    internal WatchStream(WatchHub hub) => Hub = hub;

    internal WatchHub Hub { get; }

    /// <summary>Watchers by id; guarded by the hub's lock.</summary>
    internal Dictionary<long, Watcher> Watchers { get; } = [];

    /// <summary>The next id to try for a server-assigned watch id (etcd starts at 0).</summary>
    internal long NextAutoId { get; set; }

    /// <summary>A RequestProgress is waiting for every watcher on the stream to catch up.</summary>
    internal bool ProgressDeferred { get; set; }

    public void Create(in WatchSpec spec) => Hub.Create(this, spec);

    public void Cancel(long watchId) => Hub.Cancel(this, watchId);

    public void RequestProgress() => Hub.RequestProgress(this);

    /// <summary>
    /// Takes the next response for the wire; from then on nothing is appended to it. False when
    /// none is waiting. Throws the hub's stop reason once the stream was ended by the hub.
    /// </summary>
    public bool TryTake(out OutboundResponse response)
    {
        if (!_queue.Reader.TryRead(out response!)) return false;
        if (response.Watcher is { } w)
        {
            lock (_sync)
            {
                if (ReferenceEquals(w.Open, response)) w.Open = null;
            }
        }
        return true;
    }

    public ValueTask<bool> WaitToTakeAsync(CancellationToken cancellationToken) => _queue.Reader.WaitToReadAsync(cancellationToken);

    /// <summary>True when more responses are waiting (the writer then defers its flush).</summary>
    public bool HasMore => _queue.Reader.TryPeek(out _);

    /// <summary>Called by the writer once a response has gone out, freeing its watcher's budget.</summary>
    public void Sent(OutboundResponse response)
    {
        if (response.Watcher is { } w)
        {
            w.Written(response.EventBytes);
            if (!w.Synced) Hub.SignalCatchUp();
        }
    }

    /// <summary>Queues events of one or more whole revisions for <paramref name="w"/>.</summary>
    internal void EnqueueEvents(Watcher w, long headerRevision, List<EncodedEvent> events)
    {
        long bytes = 0;
        foreach (var e in events) bytes += e.Bytes.Length;
        lock (_sync)
        {
            var open = w.Open;
            if (open is null || open.EventBytes + bytes > CoalesceBytes)
            {
                open = new OutboundResponse(new WatchResponseFrame { Header = new Etcdserverpb.ResponseHeader(), WatchId = w.Id }, w);
                if (w.Open is null) _open.Add(w);
                w.Open = open;
                w.Queued();
                _queue.Writer.TryWrite(open);
            }
            open.Frame.Header.Revision = headerRevision;
            foreach (var e in events) open.Frame.Events.Add(e.Bytes);
            open.EventBytes += bytes;
            w.AddPendingBytes(bytes);
        }
    }

    /// <summary>Queues a control response (created, canceled, progress) after closing every open events response.</summary>
    internal void Enqueue(WatchResponseFrame response)
    {
        lock (_sync)
        {
            foreach (var w in _open) w.Open = null;
            _open.Clear();
            _queue.Writer.TryWrite(new OutboundResponse(response, null));
        }
    }

    internal void Complete(Exception? error) => _queue.Writer.TryComplete(error);

    /// <summary>Removes every watcher of the stream; the stream queues nothing more.</summary>
    public void Dispose() => Hub.Close(this);
}
