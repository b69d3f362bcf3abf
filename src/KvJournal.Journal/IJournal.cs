namespace KvJournal.Journal;

/// <summary>
/// An append-only, totally ordered, durable log of opaque entries. This is the one seam between a
/// member and its durability: the embedded FasterLog, a journal server and later a replicated
/// engine are all homes behind it.
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
    /// durable; callers treat it as indeterminate, as etcd does a timed-out proposal.
    /// </summary>
    ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default);

    /// <summary>Position of the last durable entry, or -1 when the journal holds none. A linearizable
    /// read waits until its member has applied up to this position as read on arrival.</summary>
    long LastDurablePosition { get; }

    /// <summary>
    /// Reads durable entries from <paramref name="fromPosition"/> (0 = the first retained entry) in
    /// order and then keeps tailing, waiting for new ones, until cancelled.
    /// </summary>
    IAsyncEnumerable<JournalRecord> ReadAsync(long fromPosition, CancellationToken cancellationToken);
}

/// <summary>One durable entry as read back: its position and its bytes.</summary>
public readonly record struct JournalRecord(long Position, ReadOnlyMemory<byte> Data);

/// <summary>The journal cannot take or return entries (device failure, disposed, unreachable).</summary>
public sealed class JournalUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
