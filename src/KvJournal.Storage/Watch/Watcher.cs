using KvJournal.Storage.Mvcc;
using Mvccpb;

namespace KvJournal.Storage.Watch;

/// <summary>What a client asked to watch (a validated WatchCreateRequest).</summary>
public readonly record struct WatchSpec(
    long WatchId,
    KeyRange Range,
    long StartRevision,
    bool PrevKv,
    bool NoPut,
    bool NoDelete,
    bool ProgressNotify,
    bool Fragment);

/// <summary>
/// One watcher on one stream. Its delivery state is guarded by the hub's lock, except
/// <see cref="_pending"/>, which the stream's writer decrements as responses leave.
/// </summary>
/// <remarks>
/// Invariant: every event with revision &lt; <see cref="NextRevision"/> has been queued to the
/// stream. A synced watcher also has every event up to the hub's notified revision queued; it
/// gets later revisions from the applier as they happen. An unsynced one is behind and is fed
/// from the store's change log by the catch-up loop until it reaches the head.
/// </remarks>
public sealed class Watcher
{
    internal Watcher(WatchStream stream, long id, in WatchSpec spec, long nextRevision)
    {
        Stream = stream;
        Id = id;
        Spec = spec;
        NextRevision = nextRevision;
    }

    public long Id { get; }

    /// <summary>The client accepts a large response split into fragments.</summary>
    public bool Fragment => Spec.Fragment;

    internal WatchStream Stream { get; }
    internal WatchSpec Spec { get; }
    internal long NextRevision { get; set; }
    internal bool Synced { get; set; }
    internal bool Removed { get; set; }

    /// <summary>No events were sent since the last progress tick (etcd's per-watcher progress flag).</summary>
    internal bool ProgressDue { get; set; } = true;

    private int _pending;
    private long _pendingBytes;

    /// <summary>Its events response still in the stream's queue, which later revisions join; guarded by the stream.</summary>
    internal OutboundResponse? Open { get; set; }

    /// <summary>
    /// Too much queued and not yet written to the client (etcd's full watcher channel): new
    /// events are then left to catch-up from history instead of piling up in memory.
    /// </summary>
    internal bool Backlogged => Volatile.Read(ref _pending) >= MaxPendingResponses || Interlocked.Read(ref _pendingBytes) >= MaxPendingBytes;

    /// <summary>Responses a watcher may have queued before it counts as slow (etcd's chanBufLen).</summary>
    internal const int MaxPendingResponses = 128;

    /// <summary>Event bytes a watcher may have queued before it counts as slow.</summary>
    internal const long MaxPendingBytes = 4 * 1024 * 1024;

    internal void Queued() => Interlocked.Increment(ref _pending);

    internal void AddPendingBytes(long bytes) => Interlocked.Add(ref _pendingBytes, bytes);

    internal void Written(long bytes)
    {
        Interlocked.Decrement(ref _pending);
        Interlocked.Add(ref _pendingBytes, -bytes);
    }

    /// <summary>True when the event passes this watcher's filters.</summary>
    internal bool Wants(Event.Types.EventType type) =>
        type == Event.Types.EventType.Put ? !Spec.NoPut : !Spec.NoDelete;

    /// <summary>
    /// etcd sends no progress notification older than the start revision the client asked for,
    /// so a client never resumes from before the point it chose.
    /// </summary>
    internal bool CanReportProgressAt(long revision) => Synced && revision >= Spec.StartRevision;
}
