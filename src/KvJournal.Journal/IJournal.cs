namespace KvJournal.Journal;

/// <summary>
/// An append-only, totally ordered, durable log of opaque entries, plus the snapshots that let it
/// be trimmed. This is the one seam between a member and its durability: the embedded FasterLog,
/// the journal service (several members on one journal) and later a replicated engine are all
/// homes behind it.
/// </summary>
/// <remarks>
/// Positions are opaque, strictly increasing numbers naming entries (not counts): an entry appended
/// after another has a larger position. Readers see only durable entries, in position order.
/// </remarks>
public interface IJournal : IAsyncDisposable
{
    /// <summary>
    /// Appends one entry and completes with its position once it is durable. Concurrent appends are
    /// group-committed: many entries share one flush. A failure means the entry may or may not be
    /// durable; callers treat it as indeterminate, as etcd does a timed-out proposal (an entry may
    /// even be durable twice when a remote append was retried: the applier drops repeats).
    /// </summary>
    ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default);

    /// <summary>The last durable position this member knows of (-1 when none); for status and metrics.</summary>
    long LastDurablePosition { get; }

    /// <summary>
    /// The journal's durable tail as of now, asked of the journal itself: a linearizable read waits
    /// until its member has applied up to it. Throws <see cref="JournalUnavailableException"/> when
    /// the journal cannot answer.
    /// </summary>
    ValueTask<long> ReadIndexAsync(CancellationToken cancellationToken);

    /// <summary>Whether the journal answered the last time it was asked (embedded: it has not failed).</summary>
    bool IsReachable { get; }

    /// <summary>Whether writes fail because the journal's device is full (the member reports NOSPACE for it).</summary>
    bool DiskFull => false;

    /// <summary>
    /// Reads durable entries after <paramref name="afterPosition"/> (-1 = from the first entry) in
    /// order and keeps tailing, until cancelled. <paramref name="afterPosition"/> must be -1 or the
    /// position of a retained entry; below the first retained entry the read fails with
    /// <see cref="JournalTrimmedException"/> (the reader must start from a snapshot). A record's
    /// bytes are valid only until the next one is asked for.
    /// </summary>
    IAsyncEnumerable<JournalRecord> ReadAsync(long afterPosition, CancellationToken cancellationToken);

    /// <summary>Drops the entries below <paramref name="position"/> (the position of an entry a snapshot covers).</summary>
    Task TrimBelowAsync(long position, CancellationToken cancellationToken);

    /// <summary>
    /// Keeps a snapshot of the state after applying every entry up to <paramref name="position"/>,
    /// drops all but the newest few, and trims the journal below the oldest one kept.
    /// </summary>
    Task PutSnapshotAsync(long position, Stream snapshot, CancellationToken cancellationToken);

    /// <summary>
    /// The newest snapshot covering a position below <paramref name="belowPosition"/>
    /// (<see cref="long.MaxValue"/>: the newest of all), or null when there is none. The caller
    /// disposes it. A member whose newest snapshot is damaged asks for the one before it. Below
    /// every snapshot there may be a state imported from etcd, which covers no entry (position -1).
    /// </summary>
    Task<JournalSnapshot?> GetSnapshotAsync(long belowPosition, CancellationToken cancellationToken);

    /// <summary>Where an entry lives, for an operator reading a log line: file and offset, or stream and position.</summary>
    string Describe(long position);
}

/// <summary>
/// One durable entry as read back: its position and its bytes. The bytes are valid until the reader
/// asks for the next record (a journal may read every record into one buffer): copy what you keep.
/// </summary>
public readonly record struct JournalRecord(long Position, ReadOnlyMemory<byte> Data);

/// <summary>A stored snapshot: the position it covers, its bytes, and where it is kept (a file, a stream), for messages.</summary>
public sealed record JournalSnapshot(long Position, Stream Data, string Source) : IAsyncDisposable
{
    public ValueTask DisposeAsync() => Data.DisposeAsync();
}

/// <summary>The journal cannot take or return entries (device failure, disposed, unreachable).</summary>
public sealed class JournalUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The journal's bytes are not what was made durable (a checksum mismatch, a gap below the last
/// commit): the member stops rather than apply or skip them.
/// </summary>
public sealed class JournalDamagedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A read asked for entries the journal no longer holds: they are covered by a snapshot.</summary>
public sealed class JournalTrimmedException(string message) : Exception(message);
